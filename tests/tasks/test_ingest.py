import pandas as pd
import pytest

from schemas.config import CacheConfig, DataConfig
from schemas.errors import DataError
from tasks.ingest import ingest_data, read_source


def _read(path, **options):
    return read_source(DataConfig(path=str(path), **options), "classification")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_reads_each_format(tmp_path, fmt):
    frame = pd.DataFrame({"review": ["good", "bad", None], "stars": [1, 0, 1]})
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    raw, counts = _read(path, text_column="review", label_column="stars")
    assert raw["text"].tolist()[:2] == ["good", "bad"]
    assert pd.isna(raw["text"].iloc[2])
    assert raw["label"].tolist() == ["1", "0", "1"]
    assert raw["row_id"].tolist() == [0, 1, 2]
    assert counts["rows_out"] == 3


def test_embedded_corpus_drops_plot_rows():
    raw, counts = read_source(DataConfig(), "classification")
    assert set(raw["label"].dropna()) == {"fresh", "rotten"}
    assert counts["rows_read"] == counts["rows_out"] + counts["rows_not_data"] and counts["not_data_why"].startswith("movie plot")
    assert counts["rows_out"] == 12808


def test_wrong_column_lists_the_columns(toy_csv):
    with pytest.raises(DataError, match=r"column 'review' not found.*\['text', 'label'\]: set data.text_column"):
        _read(toy_csv, text_column="review")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        _read(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        _read(path)


def test_header_only(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("text,label\n")
    with pytest.raises(DataError, match="no data rows"):
        _read(path)


def test_undecodable_bytes_name_the_option(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\u00e9 cr\u00e8me,pos\n".encode("cp1252"))
    with pytest.raises(DataError, match="data.encoding"):
        _read(path)
    raw, _ = _read(path, encoding="cp1252")
    assert raw["text"].iloc[0] == "caf\u00e9 cr\u00e8me"


def test_unknown_extension_asks_for_format(tmp_path):
    path = tmp_path / "data.xyz"
    path.write_text("text,label\na,b\n")
    with pytest.raises(DataError, match="data.format"):
        _read(path)
    raw, _ = _read(path, format="csv")
    assert len(raw) == 1


def test_ingest_task_caches_by_content(toy_csv, tmp_path):
    cache = CacheConfig(dir=str(tmp_path / "cache"))
    first = ingest_data.fn(DataConfig(path=str(toy_csv)), cache, "classification")
    second = ingest_data.fn(DataConfig(path=str(toy_csv)), cache, "classification")
    assert (first.reused, second.reused) == (False, True)
    assert first.key == second.key
    toy_csv.write_text(toy_csv.read_text().replace("film 1,", "film one,", 1))
    third = ingest_data.fn(DataConfig(path=str(toy_csv)), cache, "classification")
    assert third.key != first.key and not third.reused


def test_json_array_and_bom_utf8(tmp_path):
    path = tmp_path / "rows.json"
    pd.DataFrame({"text": ["good", "bad"], "label": ["pos", "neg"]}).to_json(path, orient="records")
    assert path.read_text().startswith("[")
    raw, _ = _read(path)
    assert raw["text"].tolist() == ["good", "bad"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefftext,label\nnaïve,pos\n".encode("utf-8"))
    raw, _ = _read(bom)
    assert raw["text"].tolist() == ["naïve"]


def test_headerless_tsv_by_position(tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("pos\tgreat film\nneg\tdull film\n")
    raw, counts = _read(path, header=False, text_column=1, label_column=0)
    assert raw["text"].tolist() == ["great film", "dull film"] and raw["label"].tolist() == ["pos", "neg"]
    assert counts["rows_read"] == 2  # the first line is data, not a header
    with pytest.raises(DataError, match=r"column '5' not found.*\['0', '1'\] \(data.header=false names them by position 0..1\)"):
        _read(path, header=False, text_column=5, label_column=0)


def test_several_text_columns_are_joined(tmp_path):
    path = tmp_path / "news.csv"
    pd.DataFrame(
        {"title": ["Rates rise", None, None], "body": ["Banks react", "Only body", None], "topic": ["biz", "biz", "sport"]}
    ).to_csv(path, index=False)
    raw, _ = _read(path, text_column=["title", "body"], label_column="topic")
    assert raw["text"].tolist()[:2] == ["Rates rise\nBanks react", "Only body"]
    assert pd.isna(raw["text"].iloc[2])


def test_folder_per_label(tmp_path):
    for label, texts in {"pos": ["great", "superb"], "neg": ["awful"]}.items():
        (tmp_path / "reviews" / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            (tmp_path / "reviews" / label / f"{i}.txt").write_text(text)
    (tmp_path / "reviews" / "neg" / "bad.txt").write_bytes(b"caf\xe9")
    raw, counts = _read(tmp_path / "reviews")
    assert sorted(zip(raw["label"], raw["text"])) == [("neg", "awful"), ("neg", "caf\\xe9"), ("pos", "great"), ("pos", "superb")]
    assert counts["rows_undecodable"] == 1 and raw["problem"].notna().sum() == 1


def test_save_to_disk_dataset_with_class_labels(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    train = Dataset.from_dict({"sentence": ["great", "awful"], "label": [1, 0]}, features=features)
    test = Dataset.from_dict({"sentence": ["fine"], "label": [1]}, features=features)
    DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))
    raw, counts = _read(tmp_path / "saved", text_column="sentence")
    assert sorted(zip(raw["text"], raw["label"])) == [("awful", "neg"), ("fine", "pos"), ("great", "pos")]
    assert counts["rows_read"] == 3


def test_hub_dataset_offline_says_how_to_go_online():
    with pytest.raises(DataError, match=r"cannot load hub dataset 'someone/reviews'.*HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0"):
        _read("hub:someone/reviews")


def test_undecodable_rows_are_flagged_not_fatal(tmp_path):
    path = tmp_path / "mostly.csv"
    rows = [f"fine text {i},pos" for i in range(9)]
    path.write_bytes(("text,label\n" + "\n".join(rows) + "\n").encode() + b"caf\xe9 au lait,neg\n")
    raw, counts = _read(path)
    assert counts["rows_undecodable"] == 1 and counts["rows_out"] == 10
    bad = raw[raw["problem"].notna()]
    assert bad["text"].tolist() == ["caf\\xe9 au lait"] and bad["problem"].tolist() == ["undecodable_bytes"]


def test_wholly_undecodable_file_names_the_line(tmp_path):
    path = tmp_path / "cp1252.csv"
    path.write_bytes("text,label\nok,pos\n\u201csmart\u201d,neg\n\u2019quote,pos\n".encode("cp1252"))
    with pytest.raises(DataError, match=r"line 3 \(bytes b'\\x93'\) does not decode, and 2 of 3 rows have such bytes; set data.encoding"):
        _read(path)


def test_binary_file_as_csv(tmp_path):
    path = tmp_path / "model.csv"
    path.write_bytes(b"PK\x03\x04\x00\x00binary\x00junk")
    with pytest.raises(DataError, match=r"'model.csv' looks binary \(NUL bytes in its first 8 KB\), not csv text"):
        _read(path)


def test_integral_float_labels_read_as_integers(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a", "label": 1.0}\n{"text": "b", "label": 2}\n{"text": "c", "label": "pos"}\n')
    raw, _ = _read(path)
    assert raw["label"].tolist() == ["1", "2", "pos"]


def test_streaming_in_chunks_gives_the_same_rows(tmp_path):
    from tasks.ingest import iter_source

    path = tmp_path / "rows.csv"
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(25)], "label": ["a", "b"] * 12 + ["a"]})
    frame.to_csv(path, index=False)
    chunks = list(iter_source(DataConfig(path=str(path)), "classification", chunk_rows=10))
    assert [len(raw) for raw, _ in chunks] == [10, 10, 5]
    streamed = pd.concat([raw for raw, _ in chunks], ignore_index=True)
    assert streamed["row_id"].tolist() == list(range(25))
    whole, counts = read_source(DataConfig(path=str(path)), "classification")
    assert streamed["text"].tolist() == whole["text"].tolist() and counts["rows_out"] == 25


def test_ingest_task_writes_every_row_it_reads(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b"text,label\nok,a\ncaf\xe9,b\n,a\n")
    result = ingest_data.fn(DataConfig(path=str(path)), CacheConfig(dir=str(tmp_path / "cache")), "classification")
    stored = pd.read_parquet(result.path)
    assert result.rows_read == result.rows_out == len(stored) == 3 and result.rows_undecodable == 1
    assert stored["problem"].tolist()[1] == "undecodable_bytes" and pd.isna(stored["text"].iloc[2])


def test_multi_label_lists_indicator_columns_pairs_and_a_given_split(tmp_path):
    import json

    lists = tmp_path / "lists.parquet"
    pd.DataFrame({"text": ["a", "b", "c"], "tags": [["x", "y"], [], None]}).to_parquet(lists)
    raw, _ = read_source(DataConfig(path=str(lists), label_column="tags"), task="multi_label")
    assert raw["label"].tolist()[:2] == ['["x", "y"]', "[]"] and pd.isna(raw["label"].iloc[2])
    with pytest.raises(DataError, match="holds lists of labels: set task=multi_label"):
        read_source(DataConfig(path=str(lists), label_column="tags"), "classification")

    table = tmp_path / "table.csv"
    pd.DataFrame({"q": ["a", "b"], "p": ["c", None], "x": [1, 0], "y": [0, 2], "part": ["train", "dev"]}).to_csv(table, index=False)
    raw, _ = read_source(
        DataConfig(path=str(table), text_column="q", text_pair_column="p", label_columns=["x", "y"], split_column="part"),
        task="multi_label",
    )
    assert list(raw.columns) == ["row_id", "text", "text_pair", "label", "split", "problem"]
    assert [json.loads(v) for v in raw["label"]] == [{"x": "1", "y": "0"}, {"x": "0", "y": "2"}]
    assert raw["text_pair"].tolist()[0] == "c" and pd.isna(raw["text_pair"].iloc[1]) and raw["split"].tolist() == ["train", "dev"]
    with pytest.raises(DataError, match=r"column 'nope' not found .* set data.text_pair_column"):
        read_source(DataConfig(path=str(table), text_column="q", label_column="x", text_pair_column="nope"), "classification")


def test_nul_byte_past_the_first_8kb_is_quarantined_not_trained_on(tmp_path):
    path = tmp_path / "late-nul.csv"
    path.write_bytes(
        b"text,label\n" + b"".join(b"row number %d is long enough,pos\n" % i for i in range(400)) + b"bad \x00 row,neg\nok,neg\n"
    )
    raw, counts = read_source(DataConfig(path=str(path)), "classification")
    assert counts["rows_nul_byte"] == 1 and len(raw) == 402
    assert raw.loc[raw["problem"] == "nul_byte", "text"].tolist() == ["bad \\x00 row"]
    assert not raw["text"].str.contains("\x00", regex=False).any()


@pytest.mark.parametrize(
    "fmt, frame, column",
    [
        ("parquet", pd.DataFrame({"text": [["a", "b"], ["c"]], "label": ["x", "y"]}), "text"),
        ("jsonl", pd.DataFrame({"text": ["a", "c"], "label": [{"k": 1}, {"k": 2}]}), "label"),
    ],
)
def test_nested_values_are_refused(tmp_path, fmt, frame, column):
    path = tmp_path / f"nested.{fmt}"
    frame.to_parquet(path) if fmt == "parquet" else frame.to_json(path, orient="records", lines=True)
    with pytest.raises(DataError, match=f"column '{column}' in 'nested.{fmt}' holds nested values"):
        read_source(DataConfig(path=str(path)), "classification")


def test_duplicate_header_names_are_refused(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("text,label,text\na,b,c\n")
    with pytest.raises(DataError, match=r"'dup.csv' repeats column names \['text'\] in its header"):
        read_source(DataConfig(path=str(path)), "classification")
