"""Ingest: read the source into the raw frame (row_id, text, label, problem).

Sources: CSV/TSV (with or without a header), JSON Lines, JSON arrays, Parquet, a folder
with one sub-folder of text files per label, a `datasets.save_to_disk` folder, or a hub
dataset (`hub:NAME[:CONFIG]`). Rows whose bytes do not decode are kept with the problem
`undecodable_bytes` (the clean step quarantines them); a file that cannot be read at all
is an error that says which option to change.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from schemas.config import DEFAULT_DATA, DEFAULT_RETRIES, EMBEDDED_DATA, CacheConfig, DataConfig, embedded_path
from schemas.data import RawFrame
from schemas.errors import DataError, is_transient
from schemas.results import IngestResult
from tasks.runtime.cache import build_step, file_sha256, fingerprint, tree_sha256
from tasks.runtime.logs import step_logger, timed

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".conll": "conll",
    ".conllu": "conllu",
}
TEXT_FORMATS = ("csv", "tsv", "jsonl", "json")
SAVED_DATASET_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")
# Each byte the encoding cannot decode becomes this private-use mark and its two hex digits, so a row can
# be flagged (and shown as \xNN) while staying valid text for pandas/Arrow; no codec produces the mark itself.
BAD_BYTE_MARK = "\U000f0000"
_BAD_BYTE = re.compile(BAD_BYTE_MARK + "([0-9a-f]{2})")
DECODE_ERRORS = "finetune_flow_mark_bad_bytes"
codecs.register_error(DECODE_ERRORS, lambda err: ("".join(f"{BAD_BYTE_MARK}{b:02x}" for b in err.object[err.start : err.end]), err.end))
CHUNK_ROWS = 200_000  # text files are read and converted this many rows at a time
ALL_BAD_SHARE = 0.5  # above this share of undecodable rows the file is taken to be in another encoding


def _source(data: DataConfig) -> tuple[Path | str, str]:
    """What to read and its format."""
    if data.path == DEFAULT_DATA:
        return embedded_path(*EMBEDDED_DATA), "embedded"
    if data.format == "hub" or data.path.startswith("hub:"):
        return data.path.removeprefix("hub:"), "hub"
    path = Path(data.path).expanduser()
    if not path.exists():
        raise DataError(f"data file '{data.path}' not found: set data.path to an existing CSV/TSV/JSONL/Parquet file or folder")
    if path.is_dir():
        if data.format in ("folder", "saved_dataset"):
            return path, data.format
        if any((path / marker).is_file() for marker in SAVED_DATASET_MARKERS):
            return path, "saved_dataset"
        if any(child.is_dir() and not child.name.startswith(".") for child in path.iterdir()):
            return path, "folder"
        raise DataError(
            f"data.path '{data.path}' is a folder without label sub-folders or a saved dataset; "
            "point it at a file, at a folder holding one sub-folder of text files per label, or at a save_to_disk folder"
        )
    return path, infer_format(path, data.format)


def infer_format(path: Path, forced: str = "auto", option: str = "data.format") -> str:
    """The file's format: forced, else from its extension (compression suffixes ignored)."""
    if forced != "auto":
        return forced
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".zip", ".xz")]
    fmt = FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise DataError(f"cannot tell the format of '{path.name}' from its extension: set {option} (csv, tsv, jsonl, json, parquet)")
    return fmt


def _python_encoding(encoding: str) -> str:
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _refuse_binary(path: Path, fmt: str, encoding: str) -> None:
    """A text format whose first bytes hold NULs is a binary file given by mistake (or UTF-16)."""
    if (
        fmt not in TEXT_FORMATS
        or encoding.lower().replace("-", "").startswith(("utf16", "utf32"))
        or path.suffix in (".gz", ".bz2", ".zip", ".xz")
    ):
        return
    with open(path, "rb") as f:
        head = f.read(8192)
    if b"\x00" in head:
        raise DataError(
            f"'{path.name}' looks binary (NUL bytes in its first 8 KB), not {fmt} text: point data.path at the "
            "text file, set data.format (e.g. parquet), or data.encoding=utf-16 if it is UTF-16 text"
        )


def first_bad_line(path: Path, encoding: str) -> tuple[int, bytes] | None:
    """(line number, offending bytes) of the first line that does not decode, or None."""
    enc = _python_encoding(encoding)
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode(enc)
            except UnicodeDecodeError as err:
                return number, line[err.start : err.end]
    return None


def read_table(path: Path, fmt: str, encoding: str, header: bool = True) -> pd.DataFrame:
    """The whole table with every cell as text; only empty cells are null. Undecodable bytes are kept
    as marks (see undecodable_rows); predict uses the same reader."""
    return next(iter_table(path, fmt, encoding, header))


def _reader(path: Path, fmt: str, encoding: str, header: bool, chunk_rows: int | None):
    """pandas' reader for the format: a frame, or an iterator of frames when chunk_rows is given."""
    enc = _python_encoding(encoding)
    if fmt in ("csv", "tsv"):
        return pd.read_csv(
            path,
            sep="\t" if fmt == "tsv" else ",",
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding=enc,
            encoding_errors=DECODE_ERRORS,
            header=0 if header else None,
            chunksize=chunk_rows,
        )
    if fmt == "jsonl":
        return pd.read_json(path, lines=True, dtype=False, encoding=enc, encoding_errors=DECODE_ERRORS, chunksize=chunk_rows)
    if fmt == "json":
        return pd.read_json(path, dtype=False, encoding=enc, encoding_errors=DECODE_ERRORS)
    return pd.read_parquet(path)


def iter_table(path: Path, fmt: str, encoding: str, header: bool = True, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The table in frames of at most chunk_rows rows (CSV/TSV/JSONL stream; other formats, or no
    chunk_rows, come as one frame). Read errors become one-line DataErrors."""
    _refuse_binary(path, fmt, encoding)
    streams = bool(chunk_rows) and fmt in ("csv", "tsv", "jsonl")
    try:
        if fmt in ("csv", "tsv") and header:
            refuse_duplicate_columns(path, fmt, encoding)
        source = _reader(path, fmt, encoding, header, chunk_rows if streams else None)
        with source if streams else contextlib.nullcontext():
            for frame in source if streams else [source]:
                if not header:
                    frame.columns = [str(c) for c in frame.columns]
                yield frame
    except UnicodeDecodeError as err:  # a codec that cannot escape (e.g. utf-16 on odd bytes)
        raise DataError(f"'{path.name}' is not valid {encoding} (byte {err.start}): set data.encoding (e.g. cp1252 or latin-1)") from None
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"'{path.name}' is empty: it has no header and no rows") from None
    except PermissionError:
        raise DataError(f"cannot read '{path}': permission denied") from None
    except (pd.errors.ParserError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError too
        # Other OSErrors propagate: they may be transient, and Prefect retries them.
        first = str(err).strip().splitlines()[0][:200]
        raise DataError(f"cannot read '{path.name}' as {fmt}: {first}; check the file or set data.format") from None


def _as_text(column: pd.Series) -> pd.Series:
    """Cells as strings, nulls kept null; integral floats (JSON 1.0) read as integers ("1")."""

    def one(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    if isinstance(column.dtype, pd.StringDtype):  # CSV/TSV cells: already text or null
        return column
    return column.map(one).astype(object)


def nul_rows(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows where any of the columns holds a NUL character (binary content past the first 8 KB that _refuse_binary reads)."""
    bad = pd.Series(False, index=frame.index)
    for column in columns:
        cells = frame[column]
        if pd.api.types.is_string_dtype(cells) and not cells.dtype == object:
            bad |= cells.str.contains("\x00", regex=False).fillna(False).astype(bool)
        else:
            bad |= cells.map(lambda v: isinstance(v, str) and "\x00" in v).astype(bool)
    return bad


def refuse_nested(frame: pd.DataFrame, column: str, option: str, source_name: str) -> None:
    """A struct or list column where text or a label is expected would be trained on as its Python repr: refuse it."""
    if frame[column].dtype != object:
        return
    nested = frame[column].map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray)))
    if nested.any():
        example = frame[column][nested].iloc[0]
        kind = "structs" if isinstance(example, dict) else "lists"
        raise DataError(
            f"column '{column}' in '{source_name}' holds nested values ({kind}, e.g. {str(example if not isinstance(example, np.ndarray) else example.tolist())[:60]}), "
            f"not plain values: flatten it in the file or set {option} to another column"
        )


def refuse_duplicate_columns(path: Path, fmt: str, encoding: str) -> None:
    """pandas renames a repeated header name to name.1; which column was meant is then a guess: refuse it."""
    header = pd.read_csv(
        path,
        sep="\t" if fmt == "tsv" else ",",
        header=None,
        nrows=1,
        dtype=str,
        keep_default_na=False,
        encoding=_python_encoding(encoding),
        encoding_errors=DECODE_ERRORS,
    )
    names = [str(v) for v in header.iloc[0]] if len(header) else []
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"'{path.name}' repeats column names {repeated} in its header: give every column its own name")


def undecodable_rows(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows where any of the columns holds bytes the encoding could not decode."""
    bad = pd.Series(False, index=frame.index)
    for column in columns:
        cells = frame[column]
        if pd.api.types.is_string_dtype(cells):
            bad |= cells.str.contains(BAD_BYTE_MARK, regex=False).fillna(False).astype(bool)
        elif cells.dtype == object:
            bad |= cells.map(lambda v: isinstance(v, str) and BAD_BYTE_MARK in v).astype(bool)
    return bad


def _visible(text: str | None) -> str | None:
    """An undecodable cell as readable text: each bad byte shown as \\xNN."""
    return None if text is None else _BAD_BYTE.sub(lambda m: f"\\x{m.group(1)}", text)


def _column(frame: pd.DataFrame, name: str, option: str, source_name: str, header: bool) -> str:
    columns = [str(c) for c in frame.columns]
    if name not in columns:
        hint = "" if header else f" (data.header=false names them by position 0..{len(columns) - 1})"
        raise DataError(f"column '{name}' not found in '{source_name}'; columns are {columns}{hint}: set {option}")
    return name


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _label_lists(column: pd.Series, task: str, source_name: str) -> pd.Series | None:
    """A label column holding lists (JSON arrays, Parquet lists) as JSON text for task=multi_label; None if it holds none.
    Structs are refused for every task."""
    if column.dtype != object:
        return None
    if column.map(lambda v: isinstance(v, dict)).any():
        refuse_nested(column.to_frame(), str(column.name), "data.label_column", source_name)
    if not column.map(_is_list).any():
        return None
    if task not in ("multi_label", "token_classification"):
        raise DataError(
            f"column '{column.name}' in '{source_name}' holds lists of labels: set task=multi_label, "
            "or point data.label_column at a column with one label per row"
        )
    return column.map(
        lambda v: json.dumps([str(x) for x in v]) if _is_list(v) else (None if v is None or pd.isna(v) else json.dumps([str(v)]))
    ).astype(object)


def _indicators(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One JSON object {column: raw value} per row: the multi-label task type validates the values."""
    cells = [_as_text(frame[c]) for c in columns]
    return pd.Series([json.dumps(dict(zip(columns, row))) for row in zip(*cells)], index=frame.index, dtype=object)


def _to_raw(
    frame: pd.DataFrame, data: DataConfig, source_name: str, header: bool = True, empty_ok: bool = False, task: str = "classification"
) -> tuple[pd.DataFrame, dict]:
    """Pick, join and rename the configured columns into the raw contract, flagging undecodable rows."""
    frame.columns = [str(c) for c in frame.columns]
    texts = [_column(frame, c, "data.text_column", source_name, header) for c in data.text_columns()]
    pair = (
        _column(frame, str(data.text_pair_column), "data.text_pair_column", source_name, header)
        if data.text_pair_column is not None
        else None
    )
    if data.label_columns is not None:
        targets = [_column(frame, str(c), "data.label_columns", source_name, header) for c in data.label_columns]
    else:
        targets = [_column(frame, str(data.label_column), "data.label_column", source_name, header)]
    split = _column(frame, str(data.split_column), "data.split_column", source_name, header) if data.split_column is not None else None
    if len(frame) == 0 and not empty_ok:
        raise DataError(f"'{source_name}' has a header but no data rows")
    words = task == "token_classification"  # its text column holds a list of words per row
    for column, option in [
        *((c, "data.text_column") for c in texts if not words),
        (pair, "data.text_pair_column"),
        (split, "data.split_column"),
        *((c, "data.label_columns") for c in (targets if data.label_columns is not None else [])),
    ]:
        if column is not None:
            refuse_nested(frame, column, option, source_name)
    used = [*texts, *targets, *[c for c in (pair, split) if c is not None]]
    bad = undecodable_rows(frame, used)
    nul = nul_rows(frame, used) & ~bad
    if len(texts) == 1 and task == "token_classification":  # a list of words per row, as JSON text
        text = frame[texts[0]].map(lambda v: json.dumps([str(x) for x in v], ensure_ascii=False) if _is_list(v) else v)
        text = _as_text(text)
    elif len(texts) == 1:
        text = _as_text(frame[texts[0]])
    else:  # title + body: the non-empty parts, one per line; null when every part is null
        parts = [[None if pd.isna(v) else v for v in _as_text(frame[c])] for c in texts]
        text = pd.Series(
            [None if all(p is None for p in row) else "\n".join(p for p in row if p) for row in zip(*parts)],
            index=frame.index,
            dtype=object,
        )
    if data.label_columns is not None:
        label = _indicators(frame, targets)
    else:
        label = _label_lists(frame[targets[0]], task, source_name)
        label = _as_text(frame[targets[0]]) if label is None else label
    columns = {"row_id": np.arange(len(frame), dtype=np.int64), "text": text.array}
    if pair is not None:
        columns["text_pair"] = _as_text(frame[pair]).array
    columns["label"] = label.array
    if split is not None:
        columns["split"] = _as_text(frame[split]).array
    raw = pd.DataFrame({**columns, "problem": np.full(len(frame), None, dtype=object)})
    n_bad = int(bad.sum())
    if n_bad:
        where = bad.to_numpy()
        for column in ("text", "text_pair", "label"):
            if column in raw:
                raw.loc[where, column] = raw.loc[where, column].map(_visible)
        raw.loc[where, "problem"] = "undecodable_bytes"
    if nul.any():
        where = nul.to_numpy()
        for column in [c for c in ("text", "text_pair", "label") if c in raw]:
            raw.loc[where, column] = raw.loc[where, column].map(lambda v: None if v is None else v.replace("\x00", "\\x00"))
        raw.loc[where, "problem"] = "nul_byte"
    return RawFrame.validate(raw), {"rows_undecodable": n_bad, "rows_nul_byte": int(nul.sum())}


def _check_decoding(path: Path, encoding: str, n_bad: int, n_rows: int, header: bool, frame: pd.DataFrame, final: bool = True) -> None:
    """Too many undecodable rows (or a header that does not decode) means the encoding is wrong: say where.
    The share is judged on the whole file (final); the header as soon as it is read."""
    header_bad = header and any(BAD_BYTE_MARK in str(c) for c in frame.columns)
    if not header_bad and (not final or n_bad <= ALL_BAD_SHARE * n_rows):
        return
    found = first_bad_line(path, encoding)
    where = f"line {found[0]} (bytes {found[1]!r})" if found else "the header"
    raise DataError(
        f"'{path.name}' is not {encoding} text: {where} does not decode, and {n_bad} of {n_rows} rows have such bytes; "
        "set data.encoding (e.g. cp1252 or latin-1)"
    )


def _read_folder(path: Path, encoding: str) -> pd.DataFrame:
    """One row per text file, labelled by its sub-folder; undecodable files are flagged, not dropped."""
    rows = []
    labels = sorted(child for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))
    for folder in labels:
        for file in sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")):
            text = file.read_bytes().decode(_python_encoding(encoding), DECODE_ERRORS)
            rows.append({"text": text, "label": folder.name, "file": str(file.relative_to(path))})
    if not rows:
        raise DataError(f"folder '{path}' has label sub-folders {[f.name for f in labels]} but no text files in them")
    return pd.DataFrame(rows)


def _dataset_frame(dataset, label_column: str) -> pd.DataFrame:
    """A datasets.Dataset (or every split of a DatasetDict, concatenated) as a frame, ClassLabel ids as names."""
    from datasets import DatasetDict, concatenate_datasets

    if isinstance(dataset, DatasetDict):
        dataset = concatenate_datasets([dataset[name] for name in sorted(dataset)])
    frame = dataset.to_pandas()
    feature = dataset.features.get(label_column)
    if feature is not None and hasattr(feature, "int2str"):
        frame[label_column] = [feature.int2str(int(v)) if v is not None and v >= 0 else None for v in frame[label_column]]
    return frame


def _read_saved_dataset(path: Path, label_column: str) -> pd.DataFrame:
    from datasets import load_from_disk

    try:
        return _dataset_frame(load_from_disk(str(path)), label_column)
    except (FileNotFoundError, ValueError) as err:
        raise DataError(f"cannot load '{path}' as a save_to_disk dataset: {str(err).splitlines()[0][:200]}") from None


def _read_hub(name: str, label_column: str) -> pd.DataFrame:
    import os

    from datasets import load_dataset

    repo, _, config = name.partition(":")
    try:
        return _dataset_frame(load_dataset(repo, config or None), label_column)
    except Exception as err:  # the hub raises many types (offline, missing repo, auth): all are the user's to fix
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (
            " This project runs offline: where a hub is reachable, run with HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0."
            if offline
            else " Check the name (hub:NAME or hub:NAME:CONFIG) and your network."
        )
        raise DataError(f"cannot load hub dataset '{name}': {str(err).splitlines()[0][:200]}.{hint}") from None


def iter_source(data: DataConfig, chunk_rows: int | None = CHUNK_ROWS, task: str = "classification") -> Iterator[tuple[pd.DataFrame, dict]]:
    """The raw frame in chunks (row_id runs on across them), each with its counts; text files stream."""
    source, fmt = _source(data)
    name = Path(str(source)).name
    if fmt == "embedded":
        frame = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""])
        # The corpus also holds movie plot summaries: they are not reviews and carry no label.
        plot = frame["category"] == "plot"
        frame = frame.loc[~plot, ["text", "category"]].rename(columns={"category": "label"})
        raw, counts = _to_raw(frame, DataConfig(), name)
        yield (
            raw,
            {
                "rows_read": int(len(plot)),
                "rows_not_data": int(plot.sum()),
                "not_data_why": "movie plot summaries (not reviews)",
                "rows_out": len(raw),
                **counts,
            },
        )
        return
    if fmt == "hub":
        frames = iter([_read_hub(str(source), str(data.label_column))])
    elif fmt == "saved_dataset":
        frames = iter([_read_saved_dataset(source, str(data.label_column))])
    elif fmt == "folder":
        frames = iter([_read_folder(source, data.encoding)])
        data = data.model_copy(update={"text_column": "text", "label_column": "label"})
    elif fmt in ("conll", "conllu"):  # one row per sentence: the JSON lists of its words and tags
        from task_types.token_classification.conll import read_conll

        frames = iter([read_conll(source, fmt, _python_encoding(data.encoding), DECODE_ERRORS, data.token_column, data.tag_column)])
        data = data.model_copy(update={"text_column": "text", "label_column": "label"})
    else:
        frames = iter_table(source, fmt, data.encoding, data.header, chunk_rows)
    offset, bad, first = 0, 0, None
    for frame in frames:
        first = frame if first is None else first
        raw, counts = _to_raw(frame, data, name, data.header, empty_ok=offset > 0, task=task)
        raw["row_id"] += offset
        offset += len(raw)
        bad += counts["rows_undecodable"]
        if fmt in TEXT_FORMATS:
            _check_decoding(source, data.encoding, bad, offset, data.header, first, final=False)
        yield raw, {"rows_read": len(frame), "rows_not_data": 0, "rows_out": len(raw), **counts}
    if fmt in TEXT_FORMATS:
        _check_decoding(source, data.encoding, bad, offset, data.header, first, final=True)


def read_source(data: DataConfig, task: str = "classification") -> tuple[pd.DataFrame, dict]:
    """The whole raw frame and its counts (tests and small inputs; ingest_data streams instead)."""
    parts, totals = [], {}
    for raw, counts in iter_source(data, task=task):
        parts.append(raw)
        totals = {k: totals.get(k, 0) + v if isinstance(v, int) else v for k, v in counts.items()}
    return pd.concat(parts, ignore_index=True), totals


def source_fingerprint(source: Path | str, fmt: str) -> str:
    if fmt == "hub":
        return fingerprint("hub", str(source))  # the hub's revision is not pinned: --refresh re-downloads
    return tree_sha256(source) if Path(source).is_dir() else file_sha256(Path(source))


@task(name="ingest", **DEFAULT_RETRIES, retry_condition_fn=is_transient)
@timed
def ingest_data(data: DataConfig, cache: CacheConfig, task: str = "classification") -> IngestResult:
    """Read the source into `rows.parquet` under the cache, keyed by its bytes and reader options.

    Args:
        data: the data section of the config.
        cache: where step outputs live and whether to recompute them.
        task: the task type (a label column of lists is a multi-label target, an error otherwise).
    Returns:
        path and key of the raw frame, and row counts (read = out; undecodable rows are flagged for the clean step).
    """
    logger = step_logger()
    source, fmt = _source(data)
    options = {
        "format": fmt,
        "text": data.text_columns(),
        "label": str(data.label_column),
        "encoding": data.encoding,
        "header": data.header,
    }
    # Options that are unset keep the key (and the cache) of runs from before they existed.
    extra = {
        "text_pair": data.text_pair_column,
        "label_columns": data.label_columns,
        "split": data.split_column,
        "lists": task == "multi_label",
        "tokens": task == "token_classification",
        "conll_columns": [data.token_column, data.tag_column] if fmt in ("conll", "conllu") else None,
    }
    options.update({k: v for k, v in extra.items() if v})
    key = fingerprint("ingest", 3, source_fingerprint(source, fmt), options)

    def make(folder: Path) -> dict:
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = [
            "row_id",
            "text",
            *(["text_pair"] if data.text_pair_column is not None else []),
            "label",
            *(["split"] if data.split_column is not None else []),
            "problem",
        ]
        schema = pa.schema([(n, pa.int64() if n == "row_id" else pa.string()) for n in names])
        totals: dict[str, int] = {}
        with pq.ParquetWriter(folder / "rows.parquet", schema) as writer:
            for raw, counts in iter_source(data, CHUNK_ROWS, task):
                writer.write_table(pa.Table.from_pandas(raw, schema=schema, preserve_index=False))
                totals = {k: totals.get(k, 0) + v if isinstance(v, int) else v for k, v in counts.items()}
        if totals["rows_read"] != totals["rows_out"] + totals["rows_not_data"]:
            raise AssertionError(f"ingest row accounting broke: {totals}")
        return {**totals, "source": str(source), "format": fmt}

    entry = build_step(cache, "ingest", key, make)
    result = IngestResult.from_manifest(entry.meta, path=str(entry.path / "rows.parquet"), key=key, reused=entry.reused)
    logger.info(
        "ingest %s (%s): %d rows read, %d handed on%s%s%s",
        Path(str(source)).name,
        fmt,
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
