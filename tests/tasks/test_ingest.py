import pandas as pd
import pytest

from schemas.config import DataConfig
from schemas.errors import DataError
from tasks.ingest import ingest_data, read_source
from schemas.config import CacheConfig


def _read(path, **options):
    return read_source(DataConfig(path=str(path), **options))


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
    raw, counts = read_source(DataConfig())
    assert set(raw["label"].dropna()) == {"fresh", "rotten"}
    assert counts["rows_read"] == counts["rows_out"] + counts["rows_not_reviews"]
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
    first = ingest_data.fn(DataConfig(path=str(toy_csv)), cache)
    second = ingest_data.fn(DataConfig(path=str(toy_csv)), cache)
    assert (first["reused"], second["reused"]) == (False, True)
    assert first["key"] == second["key"]
    toy_csv.write_text(toy_csv.read_text().replace("film 1,", "film one,", 1))
    third = ingest_data.fn(DataConfig(path=str(toy_csv)), cache)
    assert third["key"] != first["key"] and not third["reused"]
