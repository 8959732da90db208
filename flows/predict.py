"""finetune-flow predict: score a file of texts with a registered model (default: the champion).

    python flows/predict.py INPUT OUTPUT [--model models:/NAME@champion] [--text-column text] [--text-pair-column COL]
                            [--runtime torch|onnx] [--quantize int8|none]

INPUT is CSV/TSV/JSONL/JSON/Parquet; OUTPUT (same choice, from its extension) gets every
input column plus what the model's task type predicts:
  classification  predicted_label, confidence, one proba_<label> per class
  multi_label     predicted_labels (a JSON list; labels at or above their tuned threshold), one proba_<label> per label
  regression      predicted_value (in the training data's units)
  token_classification  words and tags (JSON lists, one tag per word) and, for BIO-style tags, entities: JSON
                  [{"type", "text", "start", "end", "score"}] with character offsets into the row's text. A text is
                  split into words on whitespace with punctuation at either end of a chunk split off; a list of
                  words (JSONL/Parquet lists, or JSON lists in CSV with --pre-tokenized) is used as given
A model trained on text pairs reads both columns. Rows whose text is empty get no prediction and
say why in `predict_error`; none is dropped.
"""

from __future__ import annotations

import sys

if __package__ in (None, ""):
    from tasks.runtime import env as _env

    _env.apply()

import argparse
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.temporary_server import temporary_api
from schemas.config import DEFAULT_RETRIES, EVAL_BATCH_SIZE, CacheConfig, RegistryConfig, TrackingConfig, check_model_name
from schemas.errors import ConfigError, DataError, FinetuneError, environment_fault, is_transient
from schemas.secrets import externalize_credentials, mask_text, mask_uri
from task_types import get_task_type
from tasks.ingest import infer_format, iter_table
from tasks.runtime.logs import quiet_user_errors, step_logger
from tasks.runtime.preflight import check_writable_file


def resolve_model_uri(model: str | None, name: str, alias: str, version: int | None) -> str:
    """models:/NAME@ALIAS by default; a version or a full URI when given."""
    if model:
        return model
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"


def with_predictions(frame: pd.DataFrame, outputs, info: dict, predicted_rows) -> pd.DataFrame:
    """The input frame plus the task type's predict columns (empty where not predicted)."""
    task_type = get_task_type(info["task"])
    out = frame.copy()
    for name in task_type.empty_columns(info["target"]):
        out[name] = None if name in ("predicted_label", "predicted_labels", *task_type.string_columns) else float("nan")
    if len(predicted_rows):
        for name, values in task_type.predict_columns(outputs, info["target"], info["decision"]).items():
            out.loc[predicted_rows, name] = values
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
        raise DataError(
            f"cannot read '{source.name}' as parquet: {str(err).splitlines()[0][:200]}; check the file or set --input-format"
        ) from None
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
            schema = pa.schema(
                [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema], metadata=table.schema.metadata
            )
            self.parquet = pq.ParquetWriter(self.partial, schema)
        if not table.schema.equals(self.parquet.schema, check_metadata=False):
            try:
                table = table.cast(self.parquet.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as err:
                raise DataError(
                    f"the input's column types change from one chunk to the next ({str(err).splitlines()[0][:150]}): "
                    "write CSV or JSONL output instead"
                ) from None
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


def input_columns(info: dict, text_column: str | None, text_pair_column: str | None) -> tuple[str, str | None]:
    """The text column (and pair column for a model trained on pairs): as given, else the names the model was trained on."""
    text = text_column or info.get("text_column") or "text"
    pair = (text_pair_column or info.get("text_pair_column") or "text_pair") if info["text_pair"] else None
    return text, pair


def predict_frame(
    frame: pd.DataFrame,
    columns: tuple[str, str | None],
    model,
    tokenizer,
    info: dict,
    max_length: int,
    batch_size: int,
    pre_tokenized: bool = False,
    bf16: bool = False,
) -> pd.DataFrame:
    """One chunk of the input plus its predictions; rows with empty text (or pair text) get none and say why in predict_error."""

    from task_types.inference import logits_for_texts
    from tasks.clean import no_content

    task_type = get_task_type(info["task"])

    def cells(column: str) -> list[str]:
        return ["" if not isinstance(v, (list, tuple, np.ndarray)) and pd.isna(v) else str(v) for v in frame[column].tolist()]

    texts = cells(columns[0])
    pairs = cells(columns[1]) if columns[1] else None
    # As training's empty_text: a text of only invisible characters is empty.
    usable = ~no_content(pd.Series(texts, index=frame.index, dtype=object))
    if pairs is not None:
        usable &= ~no_content(pd.Series(pairs, index=frame.index, dtype=object))
    chosen = [t for t, ok in zip(texts, usable) if ok]
    chosen_pairs = [p for p, ok in zip(pairs, usable) if ok] if pairs is not None else None
    outputs = None
    if chosen and task_type.word_level:  # words, tags and entity spans per row, windowed like training
        from task_types.token_classification.inference import tag_outputs

        values = [v for v, ok in zip(frame[columns[0]].tolist(), usable) if ok]
        outputs = tag_outputs(model, tokenizer, values, max_length, batch_size, pre_tokenized=pre_tokenized)
    elif chosen:
        chunk = info.get("long_text") == "chunk"  # windows as in training
        length = int(info.get("max_length") or max_length) if chunk else max_length
        logits = logits_for_texts(
            model, tokenizer, chosen, length, batch_size, pairs=chosen_pairs, chunk=chunk, how=task_type.window_aggregate, bf16=bf16
        )
        outputs = task_type.outputs(logits, info["target"], info["decision"])
    out = with_predictions(frame, outputs, info, frame.index[usable])
    why = "null or empty text" + (" or text pair" if pairs is not None else "")
    out["predict_error"] = usable.map(lambda ok: None if ok else why).astype(object)
    return out


@task(name="load_model", **DEFAULT_RETRIES, retry_condition_fn=is_transient, persist_result=False, cache_policy=NO_CACHE)
def load_model(model_uri: str, tracking_uri: str | None, trust_remote_code: bool = False):
    import mlflow
    from mlflow.exceptions import MlflowException

    from tasks.serving.model_io import load_registered

    tracking_uri = TrackingConfig(uri=tracking_uri).resolved_uri()  # None: the URI is in MLFLOW_TRACKING_URI (it holds a secret)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        return load_registered(model_uri, trust_remote_code, "pass --trust-remote-code")
    except MlflowException as err:
        raise ConfigError(
            f"cannot load {model_uri} from {mask_uri(tracking_uri)}: {mask_text(str(err).splitlines()[0])}; "
            "set --model, --name/--alias or --version (python -m flows.registry list shows them)"
        ) from None


@flow(name="predict")
def predict(
    input_path: str,
    output_path: str,
    model_uri: str,
    tracking_uri: str | None,
    text_column: str | None = None,
    input_format: str = "auto",
    encoding: str = "utf-8",
    batch_size: int = EVAL_BATCH_SIZE,
    max_length: int = 512,
    trust_remote_code: bool = False,
    chunk_rows: int = PREDICT_CHUNK_ROWS,
    text_pair_column: str | None = None,
    pre_tokenized: bool = False,
    runtime: str = "torch",
    quantize: str = "int8",
    cache_dir: str | None = None,
    precision: str = "auto",
) -> dict:
    """Read the input in chunks, predict every non-empty text (or pair) with the model, write input + predictions chunk by chunk."""
    from task_types.inference import model_task

    logger = step_logger()
    started = time.perf_counter()
    source = Path(input_path)
    if not source.is_file():
        raise DataError(f"input file '{input_path}' not found")
    chunks = iter_input(source, infer_format(source, input_format, "--input-format"), encoding, chunk_rows)
    first = next(chunks)
    if text_column is not None and text_column not in first.columns:
        raise DataError(
            f"column '{text_column}' not found in '{source.name}'; columns are {[str(c) for c in first.columns]}: set --text-column"
        )
    infer_format(Path(output_path), option="the output file's extension")
    check_writable_file(output_path, "the output file")
    model, tokenizer = load_model(model_uri, tracking_uri, trust_remote_code)
    info = model_task(model.config)
    if runtime == "onnx":
        model = onnx_runtime_model(model, tokenizer, quantize, CacheConfig(dir=cache_dir).resolved_dir())
    bf16 = runtime == "torch" and use_bf16(precision)
    columns = input_columns(info, text_column, text_pair_column)
    for column, flag in zip(columns, ("--text-column", "--text-pair-column")):
        if column is not None and column not in first.columns:
            raise DataError(f"column '{column}' not found in '{source.name}'; columns are {[str(c) for c in first.columns]}: set {flag}")
    writer, rows_in, predicted = TableWriter(Path(output_path)), 0, 0
    try:
        for frame in itertools.chain([first], chunks):
            out = predict_frame(
                frame, columns, model, tokenizer, info, min(max_length, tokenizer.model_max_length), batch_size, pre_tokenized, bf16
            )
            writer.write(out)
            rows_in, predicted = rows_in + len(out), predicted + int(out["predict_error"].isna().sum())
    except BaseException:
        writer.discard()
        raise
    writer.close()
    summary = {
        "model_uri": model_uri,
        "task": info["task"],
        "rows_in": rows_in,
        "rows_predicted": predicted,
        "rows_not_predicted": rows_in - predicted,
        "runtime": f"torch ({'bf16' if bf16 else 'fp32'})" if runtime == "torch" else f"onnx ({quantize})",
        "output": str(output_path),
        "seconds": round(time.perf_counter() - started, 2),
    }
    logger.info(
        "predict: %d rows in = %d predicted + %d not predicted (empty text); wrote %s",
        summary["rows_in"],
        summary["rows_predicted"],
        summary["rows_not_predicted"],
        output_path,
    )
    return summary


def use_bf16(precision: str) -> bool:
    """bf16 autocast for the torch runtime: asked for, or auto on a CPU that multiplies bf16 natively (as evaluation does)."""
    from task_types.inference import cpu_has_fast_bf16

    return precision == "bf16" or (precision == "auto" and cpu_has_fast_bf16())


def onnx_runtime_model(model, tokenizer, quantize: str, cache_dir: Path):
    """The model as an onnxruntime session (exported once per model and quantization, cached under cache_dir/onnx)."""
    from tasks.serving.onnx_export import OnnxModel, cached_export

    path = cached_export(model, tokenizer, cache_dir, quantize)
    step_logger().info("predict: onnxruntime on %s", path)
    return OnnxModel(path, model.config)


def add_model_arguments(parser: argparse.ArgumentParser, use: str = "use") -> None:
    """--model / --name / --alias / --version: which registered model (predict and export share them)."""
    registry = RegistryConfig()
    parser.add_argument(
        "--model", help="full model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/...); overrides --name/--alias/--version"
    )
    parser.add_argument("--name", default=registry.model_name, help=f"registered model name (default: {registry.model_name})")
    parser.add_argument("--alias", default=registry.alias, help=f"alias to {use} (default: {registry.alias})")
    parser.add_argument("--version", type=int, help="a registered version number instead of the alias")


def main(argv: list[str] | None = None) -> int:
    tracking = TrackingConfig()
    parser = argparse.ArgumentParser(
        prog="python flows/predict.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("input", help="file of texts: CSV/TSV/JSONL/JSON/Parquet")
    parser.add_argument("output", help="where to write input columns + predictions; format from the extension")
    add_model_arguments(parser)
    parser.add_argument("--text-column", help="input column holding the text (default: the column the model was trained on, else text)")
    parser.add_argument(
        "--text-pair-column",
        help="for a model trained on text pairs: the column holding the second text (default: the column it was trained on)",
    )
    parser.add_argument(
        "--pre-tokenized",
        action="store_true",
        help="token_classification: text cells holding JSON lists are words as given (lists in JSONL/Parquet always are)",
    )
    parser.add_argument(
        "--input-format",
        default="auto",
        choices=["auto", "csv", "tsv", "jsonl", "json", "parquet"],
        help="input format (default: from the extension)",
    )
    parser.add_argument("--encoding", default="utf-8", help="text encoding of CSV/TSV/JSONL input (default: utf-8)")
    parser.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE, help=f"texts per forward pass (default: {EVAL_BATCH_SIZE})")
    parser.add_argument("--max-length", type=int, default=512, help="tokens read per text (default: 512, capped by the model)")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a model whose files carry their own Python code (auto_map) to run it; off: such a model is refused",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="torch runtime: auto (default) uses bf16 on a CPU with native bf16 (AVX512-BF16 or AMX), as evaluation "
        "does, else fp32; labels agree with fp32 on nearly every row (bench/predict.py)",
    )
    parser.add_argument(
        "--runtime",
        choices=["torch", "onnx"],
        default="torch",
        help="torch (default), or onnx: the model exported to ONNX (as make export does; cached under .cache/onnx) "
        "and run by onnxruntime on the CPU",
    )
    parser.add_argument(
        "--quantize",
        choices=["int8", "none"],
        help="with --runtime onnx: int8 (default: dynamic int8 quantization, faster, predictions agree with torch on "
        "nearly every row; bench/serving.py measures both) or none (fp32)",
    )
    parser.add_argument("--tracking-uri", default=tracking.resolved_uri(), help="MLflow store (default: the project's mlruns/mlflow.db)")
    args = parser.parse_args(argv)
    if args.quantize and args.runtime != "onnx":
        parser.error("--quantize applies to --runtime onnx only")
    quiet_user_errors()
    uri = resolve_model_uri(args.model, args.name, args.alias, args.version)
    tracking_uri = externalize_credentials(args.tracking_uri)  # the flow's parameters are stored: no secret in them
    try:
        if not args.model:
            check_model_name(args.name)
        with temporary_api():  # without PREFECT_API_URL: a temporary server that dies with this process
            summary = predict(
                args.input,
                args.output,
                uri,
                tracking_uri,
                args.text_column,
                args.input_format,
                args.encoding,
                args.batch_size,
                args.max_length,
                args.trust_remote_code,
                text_pair_column=args.text_pair_column,
                pre_tokenized=args.pre_tokenized,
                runtime=args.runtime,
                quantize=args.quantize or "int8",
                precision=args.precision,
            )
    except FinetuneError as err:
        print(f"error: {mask_text(str(err))}", file=sys.stderr)
        return 2
    except Exception as err:
        if environment_fault(err) is None:
            raise
        print(
            f"error: {mask_text(environment_fault(err))}: a disk is full or read-only; free space or choose another output path",
            file=sys.stderr,
        )
        return 1
    print(
        f"{summary['rows_in']} rows in = {summary['rows_predicted']} predicted + {summary['rows_not_predicted']} not predicted (empty text)"
    )
    print(f"model   {mask_text(summary['model_uri'])} ({summary['runtime']})\noutput  {summary['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
