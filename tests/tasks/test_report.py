from schemas.results import CleanResult, IngestResult, SplitResult, TokenizeResult
from tasks.report import build_report, report_markdown


def _steps(split_target=None, windows=None, clean_facts=None):
    raw = IngestResult(
        path="rows.parquet",
        key="i",
        reused=False,
        source="data.csv",
        rows_read=12,
        rows_out=10,
        rows_not_data=2,
        not_data_why="plot summaries",
    )
    clean = CleanResult(
        path="clean.parquet",
        key="c",
        reused=False,
        rows_in=10,
        rows_kept=8,
        rows_quarantined=2,
        quarantine_reasons={"duplicate": 1, "null_text": 1},
        quarantine="q.csv",
        task_facts=clean_facts or {},
    )
    split = SplitResult(
        paths={},
        key="s",
        reused=False,
        rows_in=8,
        labels=["neg", "pos"],
        target=split_target or {"labels": ["neg", "pos"]},
        splits={
            "train": {"rows": 6, "per_class": {"neg": 3, "pos": 3}},
            "validation": {"rows": 1, "per_class": {"pos": 1}},
            "test": {"rows": 1, "per_class": {"neg": 1}},
        },
    )
    stats = {"p50": 5.0, "p95": 9.0, "max": 12, "truncated": 1, "fraction_truncated": 0.1}
    tokens = TokenizeResult(
        paths={},
        length_files={},
        key="t",
        reused=False,
        labels=split.labels,
        target=split.target,
        max_length=8,
        lengths={name: stats for name in ("train", "validation", "test")},
        long_text="chunk" if windows else "truncate",
        windows=windows or {},
    )
    return raw, clean, split, tokens


def test_the_report_accounts_for_every_row_and_says_where_they_went():
    report = build_report(*_steps(), "classification")
    assert report["rows"]["clean_in"] == report["rows"]["kept"] + report["rows"]["quarantined"] == 10
    assert report["rows"]["not_data"] == 2 and report["duplicates_dropped"] == 1
    assert report["class_balance"]["train"] == {"neg": 3, "pos": 3}
    text = report_markdown(report)
    assert "12 rows read (2 left out by the reader: plot summaries)" in text
    assert "| null_text | 1 |" in text and "| train | 3 | 3 |" in text and "`q.csv`" in text


def test_the_report_names_labels_never_seen_in_training_and_chunked_texts():
    target = {"labels": ["a", "b"], "no_train_positives": ["b"]}
    windows = {"train": {"documents_chunked": 2, "windows": 7, "documents": 6}}
    report = build_report(*_steps(target, windows), "classification")
    text = report_markdown(report)
    assert "**Labels with no positive example in training** (the model cannot learn them): `b`" in text
    assert "train: 2 of 6 texts needed windows; 7 windows in all" in text


def test_the_report_of_tagged_words_says_how_many_tags_were_repaired():
    target = {"labels": ["B-PER", "I-PER", "O"], "scheme": "IOB2", "entity_types": ["PER"]}
    report = build_report(
        *_steps(target, clean_facts={"tag_scheme": "IOB2", "tags_repaired": 3, "sentences_repaired": 2}), "token_classification"
    )
    assert report["tagging"]["scheme"] == "IOB2" and (report["tagging"]["tags_repaired"], report["tagging"]["sentences_repaired"]) == (3, 2)
    assert "tags repaired (data.tag_repair=fix): 3 in 2 sentences" in report_markdown(report)
