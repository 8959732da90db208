"""Reading tables: formats by extension, CSV/TSV/JSONL/JSON/Parquet in chunks with every cell as text, bytes that do
not decode kept as marks (shown as \\xNN, quarantined by the clean step), binary files and repeated headers refused,
folders of text files, datasets' save_to_disk folders and hub datasets. Ingest and predict read through here."""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from schemas.errors import DataError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
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


def infer_format(path: Path, forced: str = "auto", option: str = "data.format", extensions: dict[str, str] | None = None) -> str:
    """The file's format: forced, else from its extension (compression suffixes ignored; extensions adds a task type's own)."""
    if forced != "auto":
        return forced
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".zip", ".xz")]
    fmt = {**FORMATS, **(extensions or {})}.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise DataError(f"cannot tell the format of '{path.name}' from its extension: set {option} (csv, tsv, jsonl, json, parquet)")
    return fmt


def python_encoding(encoding: str) -> str:
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def refuse_binary(path: Path, fmt: str, encoding: str) -> None:
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
    enc = python_encoding(encoding)
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode(enc)
            except UnicodeDecodeError as err:
                return number, line[err.start : err.end]
    return None


def _reader(path: Path, fmt: str, encoding: str, header: bool, chunk_rows: int | None):
    """pandas' reader for the format: a frame, or an iterator of frames when chunk_rows is given."""
    enc = python_encoding(encoding)
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


def read_bytes(data: bytes, fmt: str, encoding: str) -> pd.DataFrame:
    """A part of a CSV/TSV (its header first) or JSON Lines file, held in memory, read as iter_table reads the file."""
    import io

    try:
        return _reader(io.BytesIO(data), fmt, encoding, True, None)
    except (pd.errors.ParserError, ValueError) as err:
        raise DataError(f"cannot read a part of the input as {fmt}: {str(err).strip().splitlines()[0][:200]}") from None


def iter_table(path: Path, fmt: str, encoding: str, header: bool = True, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The table in frames of at most chunk_rows rows (CSV/TSV/JSONL stream; other formats, or no
    chunk_rows, come as one frame). Read errors become one-line DataErrors."""
    refuse_binary(path, fmt, encoding)
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


def nul_rows(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows where any of the columns holds a NUL character (binary content past the first 8 KB that refuse_binary reads)."""
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
        encoding=python_encoding(encoding),
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


def visible(text: str | None) -> str | None:
    """An undecodable cell as readable text: each bad byte shown as \\xNN."""
    return None if text is None else _BAD_BYTE.sub(lambda m: f"\\x{m.group(1)}", text)


def check_decoding(path: Path, encoding: str, n_bad: int, n_rows: int, header: bool, frame: pd.DataFrame, final: bool = True) -> None:
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


def read_folder(path: Path, encoding: str) -> pd.DataFrame:
    """One row per text file, labelled by its sub-folder; undecodable files are flagged, not dropped."""
    rows = []
    labels = sorted(child for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))
    for folder in labels:
        for file in sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")):
            text = file.read_bytes().decode(python_encoding(encoding), DECODE_ERRORS)
            rows.append({"text": text, "label": folder.name, "file": str(file.relative_to(path))})
    if not rows:
        raise DataError(f"folder '{path}' has label sub-folders {[f.name for f in labels]} but no text files in them")
    return pd.DataFrame(rows)


def dataset_frame(dataset, label_column: str) -> pd.DataFrame:
    """A datasets.Dataset (or every split of a DatasetDict, concatenated) as a frame, ClassLabel ids as names."""
    from datasets import DatasetDict, concatenate_datasets

    if isinstance(dataset, DatasetDict):
        dataset = concatenate_datasets([dataset[name] for name in sorted(dataset)])
    frame = dataset.to_pandas()
    feature = dataset.features.get(label_column)
    if feature is not None and hasattr(feature, "int2str"):
        frame[label_column] = [feature.int2str(int(v)) if v is not None and v >= 0 else None for v in frame[label_column]]
    return frame


def read_saved_dataset(path: Path, label_column: str) -> pd.DataFrame:
    from datasets import load_from_disk

    try:
        return dataset_frame(load_from_disk(str(path)), label_column)
    except (FileNotFoundError, ValueError) as err:
        raise DataError(f"cannot load '{path}' as a save_to_disk dataset: {str(err).splitlines()[0][:200]}") from None


def read_hub(name: str, label_column: str) -> pd.DataFrame:
    import os

    from datasets import load_dataset

    repo, _, config = name.partition(":")
    try:
        return dataset_frame(load_dataset(repo, config or None), label_column)
    except Exception as err:  # the hub raises many types (offline, missing repo, auth): all are the user's to fix
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (
            " This project runs offline: where a hub is reachable, run with HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0."
            if offline
            else " Check the name (hub:NAME or hub:NAME:CONFIG) and your network."
        )
        raise DataError(f"cannot load hub dataset '{name}': {str(err).splitlines()[0][:200]}.{hint}") from None
