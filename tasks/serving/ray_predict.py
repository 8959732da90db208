"""Batch prediction on a Ray cluster (flows/predict.py --runner ray): the input is cut into chunks on record boundaries
(byte ranges of CSV/TSV/JSONL files, row groups of Parquet files), each chunk is answered by a pool of Ray actors that
each load the model once (on a GPU when asked) and written as one part file; a manifest reconciles rows in = rows out.

- Every row keeps an id: its own column (--id-column), else `row_id`, its 0-based position in the input (files in
  name order, rows in file order), so the output joins back to the input.
- A chunk is idempotent: its part is written to a temporary name and renamed, so a retried chunk replaces, never
  duplicates. Actors restart when their node goes away (max_restarts) and the driver sends a chunk whose actor died,
  or whose answer failed, again (MAX_ATTEMPTS): no row is lost or doubled, and the manifest checks it.
"""

from __future__ import annotations

import glob
import json
import time
from pathlib import Path

import pandas as pd

from schemas.errors import DataError
from schemas.predict import PREDICT_CHUNK_ROWS
from tasks.readers.tables import infer_format, iter_table, python_encoding, read_bytes

CHUNK_ROWS = PREDICT_CHUNK_ROWS  # rows a chunk holds (--chunk-rows): a task of seconds to minutes
MAX_ATTEMPTS = 4
ID_COLUMN = "row_id"
PART = "part-{:06d}.{}"


def input_files(given: str, input_format: str) -> tuple[list[Path], str]:
    """(the files to read, in name order, and their format): one file, a folder of files of one format, or a glob."""
    path = Path(given)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    elif any(c in given for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(given) if Path(p).is_file())
    else:
        files = [path] if path.is_file() else []
    if not files:
        raise DataError(f"input '{given}' names no file: give a file, a folder of files or a glob")
    formats = {infer_format(f, input_format, "--input-format") for f in files}
    if len(formats) > 1 or formats & {"json"}:
        raise DataError(f"the input files are {sorted(formats)}: --runner ray reads CSV, TSV, JSONL or Parquet files of one format")
    return files, formats.pop()


def _record_ends(path: Path, encoding: str) -> list[int]:
    """Byte offsets where each CSV/TSV record ends (a newline outside quotes), the header's first."""
    ends, quotes, offset = [], 0, 0
    with open(path, "rb") as handle:
        for line in handle:
            offset += len(line)
            quotes += line.count(b'"')
            if quotes % 2 == 0:
                ends.append(offset)
                quotes = 0
    if ends and ends[-1] < offset:
        ends.append(offset)
    return ends


def plan_chunks(files: list[Path], fmt: str, encoding: str, rows: int = CHUNK_ROWS) -> list[dict]:
    """Every chunk of the input: {index, path, fmt, first_row, rows, and its byte range or row groups}."""
    chunks, first = [], 0
    for path in files:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            group, count = [], 0
            for g in range(meta.num_row_groups):
                group.append(g)
                count += meta.row_group(g).num_rows
                if count >= rows or g == meta.num_row_groups - 1:
                    chunks.append({"path": str(path), "fmt": fmt, "row_groups": group, "rows": count, "first_row": first})
                    first, group, count = first + count, [], 0
            continue
        ends = _record_ends(path, encoding) if fmt in ("csv", "tsv") else None
        if ends is None:  # JSON Lines: a record per non-empty line
            ends, offset = [], 0
            with open(path, "rb") as handle:
                for line in handle:
                    offset += len(line)
                    if line.strip():
                        ends.append(offset)
            header = 0
        else:
            header, ends = (ends[0] if ends else 0), ends[1:]
        for start in range(0, len(ends), rows):
            piece = ends[start : start + rows]
            begin = ends[start - 1] if start else header
            chunks.append(
                {"path": str(path), "fmt": fmt, "header": header, "start": begin, "end": piece[-1], "rows": len(piece), "first_row": first}
            )
            first += len(piece)
    for index, chunk in enumerate(chunks):
        chunk["index"] = index
    return chunks


def read_chunk(chunk: dict, encoding: str) -> pd.DataFrame:
    """One chunk's rows, every cell read as the local predict reads it."""
    if chunk["fmt"] == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(chunk["path"]).read_row_groups(chunk["row_groups"]).to_pandas()
    with open(chunk["path"], "rb") as handle:
        head = handle.read(chunk["header"])
        handle.seek(chunk["start"])
        body = handle.read(chunk["end"] - chunk["start"])
    frame = read_bytes(head + body, chunk["fmt"], encoding)
    if len(frame) != chunk["rows"]:
        raise DataError(f"chunk {chunk['index']} of '{Path(chunk['path']).name}' read {len(frame)} rows, {chunk['rows']} planned")
    return frame


def write_part(frame: pd.DataFrame, folder: Path, index: int, fmt: str) -> str:
    """The chunk's answers as part-<index>.<fmt>, written to a temporary name and renamed (a retry replaces it)."""
    name = PART.format(index, fmt)
    partial = folder / f".{name}.partial"
    if fmt == "parquet":
        frame.to_parquet(partial, index=False)
    elif fmt == "csv":
        frame.to_csv(partial, index=False)
    else:
        frame.to_json(partial, orient="records", lines=True, force_ascii=False)
    partial.replace(folder / name)
    return name


class ChunkPredictor:
    """A Ray actor's state: the model, loaded once, and the predictor over it."""

    def __init__(self, model_uri: str, tracking_uri: str | None, trust_remote_code: bool, options: dict, encoding: str):
        from tasks.runtime import env

        env.apply()
        import mlflow

        from schemas.config import TrackingConfig
        from tasks.serving.model_io import load_registered
        from tasks.serving.predictor import PredictOptions, Predictor

        uri = TrackingConfig(uri=tracking_uri).resolved_uri()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        model, tokenizer = load_registered(model_uri, trust_remote_code, "pass --trust-remote-code")
        self.predictor, self.encoding = Predictor(model, tokenizer, PredictOptions(**options)), encoding

    def answer(self, chunk: dict, folder: str, fmt: str, id_column: str | None) -> dict:
        frame = read_chunk(chunk, self.encoding)
        self.predictor.check_columns(list(frame.columns), f"'{Path(chunk['path']).name}'")
        if id_column is None:
            frame.insert(0, ID_COLUMN, range(chunk["first_row"], chunk["first_row"] + len(frame)))
        out = self.predictor.predict(frame)
        error = self.predictor.options.output_prefix + "predict_error"
        part = write_part(out, Path(folder), chunk["index"], fmt)
        return {
            "index": chunk["index"],
            "rows_in": len(frame),
            "rows_out": len(out),
            "rows_predicted": int(out[error].isna().sum()),
            "part": part,
        }


def predict_on_ray(cfg, model_uri: str, options: dict) -> dict:
    """Answer every chunk on a pool of cfg.workers actors; the output folder gets the parts and manifest.json."""
    import ray

    from tasks.training.ray_train import connect

    files, fmt = input_files(cfg.input, cfg.input_format)
    out_fmt = cfg.output_format or "parquet"
    folder = Path(cfg.output)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"--runner ray writes a folder of part files: '{cfg.output}' is a file; name a folder")
    folder.mkdir(parents=True, exist_ok=True)
    if list(folder.glob("part-*")):
        raise DataError(f"'{cfg.output}' holds part files of another run: name an empty or new folder")
    first = next(iter_table(files[0], fmt, cfg.encoding, True, 10)) if fmt != "parquet" else pd.read_parquet(files[0]).head(10)
    if cfg.id_column is not None and cfg.id_column not in first.columns:
        raise DataError(f"--id-column '{cfg.id_column}' is not a column of the input; columns are {[str(c) for c in first.columns]}")
    if cfg.id_column is None and ID_COLUMN in first.columns:
        raise DataError(f"the input has a column '{ID_COLUMN}', the id --runner ray adds: name it with --id-column {ID_COLUMN}")
    started = time.perf_counter()
    chunks = plan_chunks(files, fmt, python_encoding(cfg.encoding), cfg.chunk_rows)
    connected = connect(cfg.ray_address, cfg.workers * cfg.worker_cpus, "--runner ray")
    try:
        remote = ray.remote(ChunkPredictor).options(
            num_cpus=cfg.worker_cpus, num_gpus=cfg.worker_gpus, max_restarts=-1, max_task_retries=-1, max_concurrency=1
        )
        actors = [remote.remote(model_uri, cfg.tracking_uri, cfg.trust_remote_code, options, cfg.encoding) for _ in range(cfg.workers)]
        results = _drive(actors, chunks, str(folder), out_fmt, cfg.id_column)
    finally:
        if connected:
            ray.shutdown()
    rows_in, rows_out = sum(c["rows"] for c in chunks), sum(r["rows_out"] for r in results.values())
    manifest = {
        "model_uri": model_uri,
        "input": [str(f) for f in files],
        "format": out_fmt,
        "id_column": cfg.id_column or ID_COLUMN,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_predicted": sum(r["rows_predicted"] for r in results.values()),
        "workers": cfg.workers,
        "seconds": round(time.perf_counter() - started, 2),
        "parts": [{**results[c["index"]], "source": c["path"], "first_row": c["first_row"]} for c in chunks],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if rows_in != rows_out or len(results) != len(chunks):
        raise DataError(
            f"rows in {rows_in} != rows out {rows_out} over {len(results)} of {len(chunks)} chunks: see {folder / 'manifest.json'}"
        )
    return manifest


def _drive(actors: list, chunks: list[dict], folder: str, fmt: str, id_column: str | None) -> dict[int, dict]:
    """Keep every actor busy with the next chunk; a chunk whose answer failed is sent again (to any actor)."""
    import ray

    queue, attempts, pending, done = list(chunks), {}, {}, {}
    free = list(actors)
    while queue or pending:
        while queue and free:
            actor, chunk = free.pop(), queue.pop(0)
            attempts[chunk["index"]] = attempts.get(chunk["index"], 0) + 1
            pending[actor.answer.remote(chunk, folder, fmt, id_column)] = (actor, chunk)
        ready, _ = ray.wait(list(pending), num_returns=1)
        actor, chunk = pending.pop(ready[0])
        free.append(actor)
        try:
            done[chunk["index"]] = ray.get(ready[0])
        except (ray.exceptions.RayError, DataError) as err:
            if isinstance(err, DataError) or attempts[chunk["index"]] >= MAX_ATTEMPTS:
                raise DataError(
                    f"chunk {chunk['index']} of '{Path(chunk['path']).name}' failed {attempts[chunk['index']]} times: {str(err).splitlines()[0][:200]}"
                ) from None
            queue.append(chunk)
    return done
