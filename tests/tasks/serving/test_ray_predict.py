"""--runner ray's pure parts: chunks cut on record boundaries (quoted newlines kept), each chunk read back whole,
ids as positions across files, the manifest's reconciliation."""

import json

import pandas as pd
import pytest

from schemas.errors import DataError
from tasks.serving.ray_predict import input_files, plan_chunks, read_chunk, write_part


def test_chunks_cover_every_row_once_across_files_and_formats(tmp_path):
    first = pd.DataFrame({"text": [f"row {i}" for i in range(7)] + ['a "quoted"\nline break'], "n": range(8)})
    second = pd.DataFrame({"text": [f"other {i}" for i in range(5)], "n": range(8, 13)})
    first.to_csv(tmp_path / "a.csv", index=False)
    second.to_csv(tmp_path / "b.csv", index=False)
    files, fmt = input_files(str(tmp_path), "auto")
    chunks = plan_chunks(files, fmt, "utf-8", rows=3)
    assert [c["rows"] for c in chunks] == [3, 3, 2, 3, 2] and [c["first_row"] for c in chunks] == [0, 3, 6, 8, 11]
    back = pd.concat([read_chunk(c, "utf-8") for c in chunks], ignore_index=True)
    assert back["text"].tolist() == first["text"].tolist() + second["text"].tolist()  # the quoted newline kept whole
    for fmt, write in (
        ("jsonl", lambda f, p: f.to_json(p, orient="records", lines=True)),
        ("parquet", lambda f, p: f.to_parquet(p, row_group_size=2)),
    ):
        folder = tmp_path / fmt
        folder.mkdir()
        write(first, folder / f"a.{fmt}")
        chunks = plan_chunks(*input_files(str(folder / f"*.{fmt}"), "auto"), "utf-8", rows=3)
        assert sum(c["rows"] for c in chunks) == 8 and pd.concat([read_chunk(c, "utf-8") for c in chunks])["n"].tolist() == list(range(8))


def test_inputs_of_several_formats_or_none_are_refused(tmp_path):
    (tmp_path / "a.csv").write_text("text\nx\n")
    (tmp_path / "b.jsonl").write_text('{"text": "y"}\n')
    with pytest.raises(DataError, match="one format"):
        input_files(str(tmp_path), "auto")
    with pytest.raises(DataError, match="names no file"):
        input_files(str(tmp_path / "nothing*.csv"), "auto")


def test_a_part_is_written_whole_and_a_retry_replaces_it(tmp_path):
    frame = pd.DataFrame({"row_id": [0, 1], "text": ["a", "b"]})
    assert write_part(frame, tmp_path, 3, "jsonl") == "part-000003.jsonl"
    write_part(frame.head(1), tmp_path, 3, "jsonl")
    assert [json.loads(line)["row_id"] for line in (tmp_path / "part-000003.jsonl").read_text().splitlines()] == [0]
    assert not list(tmp_path.glob(".*partial"))
