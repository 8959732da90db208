"""finetune-flow predict: label a file of texts with a registered model (default: the champion).

    python flows/predict.py INPUT OUTPUT [--model models:/NAME@champion] [--text-column text]

INPUT is CSV/TSV/JSONL/JSON/Parquet; OUTPUT (same choice, from its extension) gets every
input column plus `predicted_label`, `confidence` and one `proba_<label>` column per class.
Rows whose text is empty get no prediction and say why in `predict_error`; none is dropped.
"""

from __future__ import annotations

import sys

if __package__ in (None, ""):
    from flows import env as _env

    _env.apply()

import argparse
import itertools
import os
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.temporary_server import temporary_api
from schemas.config import RegistryConfig, TrackingConfig, check_model_name
from schemas.errors import ConfigError, DataError, FinetuneError, environment_fault, is_transient
from schemas.secrets import externalize_credentials, mask_text, mask_uri
from tasks.ingest import infer_format, iter_table
from tasks.logs import quiet_user_errors, step_logger
from tasks.preflight import check_writable_file


def resolve_model_uri(model: str | None, name: str, alias: str, version: int | None) -> str:
    """models:/NAME@ALIAS by default; a version or a full URI when given."""
    if model:
        return model
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"


def with_predictions(frame: pd.DataFrame, proba, id2label: dict[int, str], predicted_rows) -> pd.DataFrame:
    """The input frame plus predicted label, confidence and per-class probabilities (NaN where not predicted)."""
    out = frame.copy()
    labels = [id2label[i] for i in range(len(id2label))]
    out["predicted_label"] = None
    out["confidence"] = float("nan")
    for name in labels:
        out[f"proba_{name}"] = float("nan")
    if len(predicted_rows):
        out.loc[predicted_rows, "predicted_label"] = [labels[i] for i in proba.argmax(axis=1)]
        out.loc[predicted_rows, "confidence"] = proba.max(axis=1)
        out.loc[predicted_rows, [f"proba_{name}" for name in labels]] = proba
    return out


PREDICT_CHUNK_ROWS = 10_000  # rows read, predicted and written at a time: memory stays flat in the input size


def iter_input(source: Path, fmt: str, encoding: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The input in frames of at most chunk_rows rows (CSV/TSV/JSONL/Parquet stream; a JSON array comes whole)."""
    if fmt != "parquet":
        yield from iter_table(source, fmt, encoding, True, chunk_rows)
        return
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read '{source.name}' as parquet: {str(err).splitlines()[0][:200]}; check the file or set --input-format") from None
    empty = True
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        empty = False
        yield batch.to_pandas()
    if empty:
        yield parquet.schema_arrow.empty_table().to_pandas()


class TableWriter:
    """Frames written one after another into one CSV/TSV/JSONL/JSON/Parquet file, which appears (by rename)
    only when every frame is written: a failed run leaves no half-written output."""

    def __init__(self, path: Path):
        self.path, self.fmt = path, infer_format(path, option="the output file's extension")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = path.with_name(f".{path.name}.partial")
        self.handle, self.parquet, self.rows = None, None, 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            self._write_parquet(frame)
        else:
            if self.handle is None:
                self.handle = open(self.partial, "w", encoding="utf-8", newline="")
            if self.fmt in ("csv", "tsv"):
                frame.to_csv(self.handle, sep="\t" if self.fmt == "tsv" else ",", index=False, header=self.rows == 0)
            elif len(frame):
                lines = frame.to_json(orient="records", lines=True, force_ascii=False).rstrip("\n")
                if self.fmt == "jsonl":
                    self.handle.write(lines + "\n")
                else:  # a JSON array: records never hold a raw newline, so the lines are the records
                    self.handle.write(("[\n" if self.rows == 0 else ",\n") + ",\n".join(lines.split("\n")))
        self.rows += len(frame)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.parquet is None:  # a column with no value in the first chunk is text, not Arrow's null type
            schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema], metadata=table.schema.metadata)
            self.parquet = pq.ParquetWriter(self.partial, schema)
        if not table.schema.equals(self.parquet.schema, check_metadata=False):
            try:
                table = table.cast(self.parquet.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as err:
                raise DataError(f"the input's column types change from one chunk to the next ({str(err).splitlines()[0][:150]}): "
                                "write CSV or JSONL output instead") from None
        self.parquet.write_table(table)

    def close(self) -> None:
        """Finish the file and publish it under its name."""
        if self.fmt == "json":
            if self.handle is None:
                self.handle = open(self.partial, "w", encoding="utf-8")
            self.handle.write("\n]\n" if self.rows else "[]\n")
        for open_file in (self.handle, self.parquet):
            if open_file is not None:
                open_file.close()
        os.replace(self.partial, self.path)

    def discard(self) -> None:
        for open_file in (self.handle, self.parquet):
            if open_file is not None:
                open_file.close()
        self.partial.unlink(missing_ok=True)


def predict_frame(frame: pd.DataFrame, text_column: str, model, tokenizer, max_length: int, batch_size: int) -> pd.DataFrame:
    """One chunk of the input plus its predictions; rows with empty text get none and say why in predict_error."""
    import numpy as np

    from tasks.clean import no_content
    from tasks.evaluate import predict_texts

    id2label = {int(k): v for k, v in model.config.id2label.items()}
    texts = ["" if pd.isna(v) else str(v) for v in frame[text_column].tolist()]
    usable = ~no_content(pd.Series(texts, index=frame.index, dtype=object))  # as training's empty_text: zero-width-only is empty
    chosen = [t for t, ok in zip(texts, usable) if ok]
    proba = predict_texts(model, tokenizer, chosen, max_length, batch_size) if chosen else np.zeros((0, len(id2label)), dtype=np.float32)
    out = with_predictions(frame, proba, id2label, frame.index[usable])
    out["predict_error"] = usable.map(lambda ok: None if ok else "null or empty text").astype(object)
    return out


@task(name="load_model", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=is_transient, persist_result=False, cache_policy=NO_CACHE)
def load_model(model_uri: str, tracking_uri: str | None, trust_remote_code: bool = False):
    import mlflow
    from mlflow.exceptions import MlflowException

    from tasks.register import load_registered

    tracking_uri = TrackingConfig(uri=tracking_uri).resolved_uri()  # None: the URI is in MLFLOW_TRACKING_URI (it holds a secret)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        return load_registered(model_uri, trust_remote_code, "pass --trust-remote-code")
    except MlflowException as err:
        raise ConfigError(f"cannot load {model_uri} from {mask_uri(tracking_uri)}: {mask_text(str(err).splitlines()[0])}; "
                          "set --model, --name/--alias or --version (python -m flows.registry list shows them)") from None


@flow(name="predict")
def predict(input_path: str, output_path: str, model_uri: str, tracking_uri: str | None, text_column: str = "text",
            input_format: str = "auto", encoding: str = "utf-8", batch_size: int = 128, max_length: int = 512,
            trust_remote_code: bool = False, chunk_rows: int = PREDICT_CHUNK_ROWS) -> dict:
    """Read the input in chunks, predict every non-empty text with the model, write input + predictions chunk by chunk."""
    logger = step_logger()
    started = time.perf_counter()
    source = Path(input_path)
    if not source.is_file():
        raise DataError(f"input file '{input_path}' not found")
    chunks = iter_input(source, infer_format(source, input_format, "--input-format"), encoding, chunk_rows)
    first = next(chunks)
    if text_column not in first.columns:
        raise DataError(f"column '{text_column}' not found in '{source.name}'; columns are {[str(c) for c in first.columns]}: set --text-column")
    infer_format(Path(output_path), option="the output file's extension")
    check_writable_file(output_path, "the output file")
    model, tokenizer = load_model(model_uri, tracking_uri, trust_remote_code)
    writer, rows_in, predicted = TableWriter(Path(output_path)), 0, 0
    try:
        for frame in itertools.chain([first], chunks):
            out = predict_frame(frame, text_column, model, tokenizer, min(max_length, tokenizer.model_max_length), batch_size)
            writer.write(out)
            rows_in, predicted = rows_in + len(out), predicted + int(out["predict_error"].isna().sum())
    except BaseException:
        writer.discard()
        raise
    writer.close()
    summary = {"model_uri": model_uri, "rows_in": rows_in, "rows_predicted": predicted, "rows_not_predicted": rows_in - predicted,
               "output": str(output_path), "seconds": round(time.perf_counter() - started, 2)}
    logger.info("predict: %d rows in = %d predicted + %d not predicted (empty text); wrote %s",
                summary["rows_in"], summary["rows_predicted"], summary["rows_not_predicted"], output_path)
    return summary


def main(argv: list[str] | None = None) -> int:
    registry, tracking = RegistryConfig(), TrackingConfig()
    parser = argparse.ArgumentParser(prog="python flows/predict.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("input", help="file of texts: CSV/TSV/JSONL/JSON/Parquet")
    parser.add_argument("output", help="where to write input columns + predictions; format from the extension")
    parser.add_argument("--model", help="full model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/...); overrides --name/--alias/--version")
    parser.add_argument("--name", default=registry.model_name, help=f"registered model name (default: {registry.model_name})")
    parser.add_argument("--alias", default=registry.alias, help=f"alias to use (default: {registry.alias})")
    parser.add_argument("--version", type=int, help="a registered version number instead of the alias")
    parser.add_argument("--text-column", default="text", help="input column holding the text (default: text)")
    parser.add_argument("--input-format", default="auto", choices=["auto", "csv", "tsv", "jsonl", "json", "parquet"], help="input format (default: from the extension)")
    parser.add_argument("--encoding", default="utf-8", help="text encoding of CSV/TSV/JSONL input (default: utf-8)")
    parser.add_argument("--batch-size", type=int, default=128, help="texts per forward pass (default: 128)")
    parser.add_argument("--max-length", type=int, default=512, help="tokens read per text (default: 512, capped by the model)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model whose files carry their own Python code (auto_map) to run it; off: such a model is refused")
    parser.add_argument("--tracking-uri", default=tracking.resolved_uri(), help="MLflow store (default: the project's mlruns/mlflow.db)")
    args = parser.parse_args(argv)
    quiet_user_errors()
    uri = resolve_model_uri(args.model, args.name, args.alias, args.version)
    tracking_uri = externalize_credentials(args.tracking_uri)  # the flow's parameters are stored: no secret in them
    try:
        if not args.model:
            check_model_name(args.name)
        with temporary_api():  # without PREFECT_API_URL: a temporary server that dies with this process
            summary = predict(args.input, args.output, uri, tracking_uri, args.text_column, args.input_format,
                              args.encoding, args.batch_size, args.max_length, args.trust_remote_code)
    except FinetuneError as err:
        print(f"error: {mask_text(str(err))}", file=sys.stderr)
        return 2
    except Exception as err:
        if environment_fault(err) is None:
            raise
        print(f"error: {mask_text(environment_fault(err))}: a disk is full or read-only; free space or choose another output path", file=sys.stderr)
        return 1
    print(f"{summary['rows_in']} rows in = {summary['rows_predicted']} predicted + {summary['rows_not_predicted']} not predicted (empty text)")
    print(f"model   {mask_text(summary['model_uri'])}\noutput  {summary['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
