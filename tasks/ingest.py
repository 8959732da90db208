"""Ingest: read the source into the raw frame (row_id, text, [text_pair], label, [split], [group], problem).

Sources: CSV/TSV (with or without a header), JSON Lines, JSON arrays, Parquet, a folder with one sub-folder of text
files per label, a `datasets.save_to_disk` folder, a hub dataset (`hub:NAME[:CONFIG]`), the formats a task type reads
itself (CoNLL, SQuAD, ...), or one file per split (`data.path={train: ..., validation: ..., test: ...}`). Rows whose
bytes do not decode are kept with the problem `undecodable_bytes` (the clean step quarantines them); a file that
cannot be read at all is an error that says which option to change.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from schemas.config import DEFAULT_DATA, DEFAULT_RETRIES, EMBEDDED_DATA, CacheConfig, DataConfig, embedded_path
from schemas.data import RawFrame
from schemas.errors import DataError, is_transient
from schemas.results import IngestResult
from task_types import TASK_TYPES, get_task_type
from task_types.base import Fields, TaskType, as_text
from tasks.readers.embedded import read_embedded
from tasks.readers.tables import (
    CHUNK_ROWS,
    DECODE_ERRORS,
    SAVED_DATASET_MARKERS,
    TEXT_FORMATS,
    check_decoding,
    infer_format,
    iter_table,
    nul_rows,
    python_encoding,
    read_folder,
    read_hub,
    read_saved_dataset,
    refuse_nested,
    undecodable_rows,
    visible,
)
from tasks.runtime.cache import build_step, file_sha256, fingerprint, tree_sha256
from tasks.runtime.logs import step_logger, timed

INGEST_VERSION = 4  # bump when what ingest writes changes: cached raw frames are read again


def _sources(data: DataConfig, task_type: TaskType) -> list[tuple[str | None, Path | str, str]]:
    """(split or None, what to read, its format) for data.path: one source, or one file per split."""
    if isinstance(data.path, dict):
        return [(split, *_source(path, data, task_type, f"data.path.{split}")) for split, path in data.path.items()]
    return [(None, *_source(data.path, data, task_type, "data.path"))]


def _source(given: str, data: DataConfig, task_type: TaskType, option: str) -> tuple[Path | str, str]:
    """What to read and its format."""
    if given == DEFAULT_DATA:
        return embedded_path(*EMBEDDED_DATA), "embedded"
    if data.format == "hub" or given.startswith("hub:"):
        return given.removeprefix("hub:"), "hub"
    path = Path(given).expanduser()
    if not path.exists():
        raise DataError(f"data file '{given}' not found: set {option} to an existing CSV/TSV/JSONL/Parquet file or folder")
    if path.is_dir():
        if data.format in ("folder", "saved_dataset"):
            return path, data.format
        if any((path / marker).is_file() for marker in SAVED_DATASET_MARKERS):
            return path, "saved_dataset"
        if any(child.is_dir() and not child.name.startswith(".") for child in path.iterdir()):
            return path, "folder"
        raise DataError(
            f"{option} '{given}' is a folder without label sub-folders or a saved dataset; "
            "point it at a file, at a folder holding one sub-folder of text files per label, or at a save_to_disk folder"
        )
    fmt = task_type.detect_format(path, infer_format(path, data.format, extensions=_extensions()))
    owners = [name for name, t in TASK_TYPES.items() if fmt in t.formats]
    if owners and fmt not in task_type.formats:
        raise DataError(f"'{path.name}' is read as {fmt}, a format of task={' or '.join(owners)}: set task={owners[0]} (or data.format)")
    return path, fmt


def _extensions() -> dict[str, str]:
    """File extensions of the formats task types read themselves (.conll, ...)."""
    return {ext: fmt for t in TASK_TYPES.values() for ext, fmt in t.extensions.items()}


def _column(frame: pd.DataFrame, name: str, option: str, source_name: str, header: bool) -> str:
    columns = [str(c) for c in frame.columns]
    if name not in columns:
        hint = "" if header else f" (data.header=false names them by position 0..{len(columns) - 1})"
        raise DataError(f"column '{name}' not found in '{source_name}'; columns are {columns}{hint}: set {option}")
    return name


def to_raw(
    frame: pd.DataFrame,
    fields: Fields,
    data: DataConfig,
    task_type: TaskType,
    source_name: str,
    header: bool = True,
    empty_ok: bool = False,
    split: str | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Pick, join and rename the source columns into the raw contract, flagging undecodable rows."""
    frame.columns = [str(c) for c in frame.columns]
    texts = [_column(frame, c, fields.text_option, source_name, header) for c in fields.text]
    pair = _column(frame, fields.text_pair, fields.text_pair_option, source_name, header) if fields.text_pair is not None else None
    targets = [_column(frame, c, fields.label_option, source_name, header) for c in fields.label]
    given_split = (
        _column(frame, str(data.split_column), "data.split_column", source_name, header)
        if data.split_column is not None and split is None
        else None
    )
    group = _column(frame, str(data.group_column), "data.group_column", source_name, header) if data.group_column is not None else None
    if len(frame) == 0 and not empty_ok:
        raise DataError(f"'{source_name}' has a header but no data rows")
    nested = task_type.nested_fields()
    for column, option in [
        *((c, fields.text_option) for c in (texts if "text" not in nested else [])),
        (pair, fields.text_pair_option),
        (given_split, "data.split_column"),
        (group, "data.group_column"),
    ]:
        if column is not None:
            refuse_nested(frame, column, option, source_name)
    used = list(dict.fromkeys([*texts, *targets, *[c for c in (pair, given_split, group) if c is not None]]))
    bad = undecodable_rows(frame, used)
    nul = nul_rows(frame, used) & ~bad
    columns = {"row_id": np.arange(len(frame), dtype=np.int64), "text": task_type.raw_text([frame[c] for c in texts], source_name).array}
    if pair is not None:
        columns["text_pair"] = as_text(frame[pair]).array
    columns["label"] = task_type.raw_label(frame, targets, data, source_name).array
    if split is not None:
        columns["split"] = np.full(len(frame), split, dtype=object)
    elif given_split is not None:
        columns["split"] = as_text(frame[given_split]).array
    if group is not None:
        columns["group"] = as_text(frame[group]).array
    raw = pd.DataFrame({**columns, "problem": np.full(len(frame), None, dtype=object)})
    n_bad = int(bad.sum())
    if n_bad:
        where = bad.to_numpy()
        for column in ("text", "text_pair", "label"):
            if column in raw:
                raw.loc[where, column] = raw.loc[where, column].map(visible)
        raw.loc[where, "problem"] = "undecodable_bytes"
    if nul.any():
        where = nul.to_numpy()
        for column in [c for c in ("text", "text_pair", "label") if c in raw]:
            raw.loc[where, column] = raw.loc[where, column].map(lambda v: None if v is None else v.replace("\x00", "\\x00"))
        raw.loc[where, "problem"] = "nul_byte"
    return RawFrame.validate(raw), {"rows_undecodable": n_bad, "rows_nul_byte": int(nul.sum())}


def _frames(source, fmt: str, data: DataConfig, task_type: TaskType, chunk_rows: int | None) -> tuple[Iterator[pd.DataFrame], Fields]:
    """The source's frames and which of their columns make the raw fields."""
    if fmt == "hub":
        return iter([read_hub(str(source), str(data.label_column))]), task_type.fields(data)
    if fmt == "saved_dataset":
        return iter([read_saved_dataset(source, str(data.label_column))]), task_type.fields(data)
    if fmt == "folder":
        return iter([read_folder(source, data.encoding)]), Fields(["text"], "data.text_column", ["label"], "data.label_column")
    if fmt in task_type.formats:
        frame = task_type.read_source(source, fmt, data, python_encoding(data.encoding), DECODE_ERRORS)
        return iter([frame]), task_type.format_fields(fmt, data)
    return iter_table(source, fmt, data.encoding, data.header, chunk_rows), task_type.fields(data)


def iter_source(data: DataConfig, task: str, chunk_rows: int | None = CHUNK_ROWS) -> Iterator[tuple[pd.DataFrame, dict]]:
    """The raw frame in chunks (row_id runs on across them and across per-split files), each with its counts; text files stream."""
    task_type, offset = get_task_type(task), 0
    for split, source, fmt in _sources(data, task_type):
        name = Path(str(source)).name
        if fmt == "embedded":
            frame, not_data, why = read_embedded(source)
            raw, counts = to_raw(frame, task_type.fields(DataConfig()), DataConfig(), task_type, name, split=split)
            raw["row_id"] += offset
            offset += len(raw)
            yield raw, {"rows_read": len(raw) + not_data, "rows_not_data": not_data, "not_data_why": why, "rows_out": len(raw), **counts}
            continue
        frames, fields = _frames(source, fmt, data, task_type, chunk_rows)
        start, bad, first = offset, 0, None
        for frame in frames:
            first = frame if first is None else first
            raw, counts = to_raw(frame, fields, data, task_type, name, data.header, empty_ok=offset > start, split=split)
            raw["row_id"] += offset
            offset += len(raw)
            bad += counts["rows_undecodable"]
            if fmt in TEXT_FORMATS:
                check_decoding(source, data.encoding, bad, offset - start, data.header, first, final=False)
            yield raw, {"rows_read": len(frame), "rows_not_data": 0, "rows_out": len(raw), **counts}
        if fmt in TEXT_FORMATS:
            check_decoding(source, data.encoding, bad, offset - start, data.header, first, final=True)


def read_source(data: DataConfig, task: str) -> tuple[pd.DataFrame, dict]:
    """The whole raw frame and its counts (tests and small inputs; ingest_data streams instead)."""
    parts, totals = [], {}
    for raw, counts in iter_source(data, task):
        parts.append(raw)
        totals = {k: totals.get(k, 0) + v if isinstance(v, int) else v for k, v in counts.items()}
    return pd.concat(parts, ignore_index=True), totals


def source_fingerprint(source: Path | str, fmt: str) -> str:
    if fmt == "hub":
        return fingerprint("hub", str(source))  # the hub's revision is not pinned: --refresh re-downloads
    return tree_sha256(source) if Path(source).is_dir() else file_sha256(Path(source))


@task(name="ingest", **DEFAULT_RETRIES, retry_condition_fn=is_transient)
@timed
def ingest_data(data: DataConfig, cache: CacheConfig, task: str) -> IngestResult:
    """Read the source into `rows.parquet` under the cache, keyed by its bytes and reader options.

    Args:
        data: the data section of the config.
        cache: where step outputs live and whether to recompute them.
        task: the task type, which says which columns make the inputs and the target and reads its own formats.
    Returns:
        path and key of the raw frame, and row counts (read = out; undecodable rows are flagged for the clean step).
    """
    logger = step_logger()
    task_type = get_task_type(task)
    sources = _sources(data, task_type)
    options = data.model_dump(mode="json", exclude={"path", "labels", "max_rows", "val_ratio", "test_ratio"})
    key = fingerprint("ingest", INGEST_VERSION, task, [(split, source_fingerprint(s, fmt), fmt) for split, s, fmt in sources], options)

    def make(folder: Path) -> dict:
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = [
            "row_id",
            "text",
            *(["text_pair"] if task_type.fields(data).text_pair is not None else []),
            "label",
            *(["split"] if data.split_column is not None or isinstance(data.path, dict) else []),
            *(["group"] if data.group_column is not None else []),
            "problem",
        ]
        schema = pa.schema([(n, pa.int64() if n == "row_id" else pa.string()) for n in names])
        totals: dict[str, int] = {}
        with pq.ParquetWriter(folder / "rows.parquet", schema) as writer:
            for raw, counts in iter_source(data, task, CHUNK_ROWS):
                writer.write_table(pa.Table.from_pandas(raw, schema=schema, preserve_index=False))
                totals = {k: totals.get(k, 0) + v if isinstance(v, int) else v for k, v in counts.items()}
        if totals["rows_read"] != totals["rows_out"] + totals["rows_not_data"]:
            raise AssertionError(f"ingest row accounting broke: {totals}")
        return {**totals, "source": ", ".join(str(s) for _, s, _ in sources), "format": ", ".join(dict.fromkeys(f for _, _, f in sources))}

    entry = build_step(cache, "ingest", key, make)
    result = IngestResult.from_manifest(entry.meta, path=str(entry.path / "rows.parquet"), key=key, reused=entry.reused)
    logger.info(
        "ingest %s (%s): %d rows read, %d handed on%s%s%s",
        ", ".join(Path(str(s)).name for _, s, _ in sources),
        result.format,
        result.rows_read,
        result.rows_out,
        f", {result.rows_not_data} left out as {result.not_data_why or 'not data'}" if result.rows_not_data else "",
        f", {result.rows_undecodable} with bytes that are not {data.encoding} (the clean step quarantines them; "
        "if the file is in another encoding, set data.encoding)"
        if result.rows_undecodable
        else "",
        " (cached)" if entry.reused else "",
    )
    return result
