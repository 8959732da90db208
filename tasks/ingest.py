"""Ingest: read the source file into the raw frame (text, label, original row number)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task

from schemas.config import DEFAULT_DATA, EMBEDDED_DATA, CacheConfig, DataConfig, embedded_path
from schemas.data import RawFrame
from schemas.errors import DataError, is_transient
from tasks.logs import step_logger, timed
from tasks.cache import StepCache, file_sha256, fingerprint

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}


def _source(data: DataConfig) -> tuple[Path, str]:
    """The file to read and its format."""
    if data.path == DEFAULT_DATA:
        return embedded_path(*EMBEDDED_DATA), "embedded"
    path = Path(data.path).expanduser()
    if not path.exists():
        raise DataError(f"data file '{data.path}' not found: set data.path to an existing CSV/TSV/JSONL/Parquet file")
    if path.is_dir():
        raise DataError(f"data.path '{data.path}' is a folder; point it at a CSV/TSV/JSONL/Parquet file")
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


def read_table(path: Path, fmt: str, encoding: str) -> pd.DataFrame:
    """Read any supported file with every cell as text; only empty cells are null."""
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        if fmt in ("csv", "tsv"):
            return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False, na_values=[""], encoding=enc)
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype=False, encoding=enc)
        if fmt == "json":
            return pd.read_json(path, dtype=False, encoding=enc)
        return pd.read_parquet(path)
    except UnicodeDecodeError as err:
        raise DataError(
            f"'{path.name}' is not valid {encoding} (byte {err.start}: {err.object[err.start:err.start + 1]!r}): "
            "set data.encoding (e.g. cp1252 or latin-1)"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"'{path.name}' is empty: it has no header and no rows") from None
    except PermissionError:
        raise DataError(f"cannot read '{path}': permission denied") from None
    except (pd.errors.ParserError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError too
        # Other OSErrors propagate: they may be transient, and Prefect retries them.
        first = str(err).strip().splitlines()[0][:200]
        raise DataError(f"cannot read '{path.name}' as {fmt}: {first}; check the file or set data.format") from None


def _as_text(column: pd.Series) -> pd.Series:
    """Cells as strings, nulls kept null (labels may arrive as numbers)."""
    return column.map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)).astype(object)


def _to_raw(frame: pd.DataFrame, text_column: str, label_column: str, source_name: str) -> pd.DataFrame:
    """Pick and rename the configured columns into the raw contract."""
    columns = [str(c) for c in frame.columns]
    for option, column in (("data.text_column", text_column), ("data.label_column", label_column)):
        if column not in columns:
            raise DataError(f"column '{column}' not found in '{source_name}'; columns are {columns}: set {option}")
    if len(frame) == 0:
        raise DataError(f"'{source_name}' has a header but no data rows")
    raw = pd.DataFrame(
        {"row_id": range(len(frame)), "text": _as_text(frame[text_column]), "label": _as_text(frame[label_column])}
    )
    return RawFrame.validate(raw)


def read_source(data: DataConfig) -> tuple[pd.DataFrame, dict]:
    """Read the configured source into the raw frame and counts."""
    path, fmt = _source(data)
    if fmt == "embedded":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        # The corpus also holds movie plot summaries: they are not reviews and carry no label.
        plot = frame["category"] == "plot"
        frame = frame.loc[~plot, ["text", "category"]].rename(columns={"category": "label"})
        raw = _to_raw(frame, "text", "label", path.name)
        return raw, {"rows_read": int(len(plot)), "rows_not_reviews": int(plot.sum()), "rows_out": len(raw)}
    frame = read_table(path, fmt, data.encoding)
    raw = _to_raw(frame, data.text_column, data.label_column, path.name)
    return raw, {"rows_read": len(frame), "rows_not_reviews": 0, "rows_out": len(raw)}


@task(name="ingest", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=is_transient)
@timed
def ingest_data(data: DataConfig, cache: CacheConfig) -> dict:
    """Read the source into `rows.parquet` under the cache, keyed by its bytes and reader options.

    Args:
        data: the data section of the config.
        cache: where step outputs live and whether to recompute them.
    Returns:
        path and key of the raw frame, and row counts.
    """
    logger = step_logger()
    path, fmt = _source(data)
    options = {"format": fmt, "text": data.text_column, "label": data.label_column, "encoding": data.encoding}
    key = fingerprint("ingest", file_sha256(path), options)

    def make(folder: Path) -> dict:
        raw, counts = read_source(data)
        raw.to_parquet(folder / "rows.parquet", index=False)
        return {**counts, "source": str(path)}

    entry = StepCache(cache.resolved_dir(), "ingest", key).build(make, refresh=cache.refresh)
    logger.info(
        "ingest %s: %d rows read, %d kept%s%s", path.name, entry.meta["rows_read"], entry.meta["rows_out"],
        f", {entry.meta['rows_not_reviews']} plot summaries left out" if entry.meta["rows_not_reviews"] else "",
        " (cached)" if entry.reused else "",
    )
    return {"path": str(entry.path / "rows.parquet"), "key": key, "reused": entry.reused, **entry.meta}
