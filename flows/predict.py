"""finetune-flow predict: score a file of rows with a registered model (default: the champion).

    python flows/predict.py INPUT OUTPUT [--model models:/NAME@champion | --name N --alias A | --version V]
                            [--text-column text] [--text-pair-column COL] [--runtime torch|onnx] [--quantize int8|none]

INPUT is CSV/TSV/JSONL/JSON/Parquet; OUTPUT (same choice, from its extension) gets every
input column plus what the model's task type predicts:
  classification  predicted_label, confidence, one proba_<label> per class
  multi_label     predicted_labels (a JSON list; labels at or above their tuned threshold), one proba_<label> per label
  regression      predicted_value (in the training data's units)
  question_answering  answer, start, end (character offsets: context[start:end] == answer), score; with --top-k N
                  also top_answers, a JSON list of the N best
  token_classification  words and tags (JSON lists, one tag per word) and, for BIO-style tags, entities: JSON
                  [{"type", "text", "start", "end", "score"}] with character offsets into the row's text. A text is
                  split into words on whitespace with punctuation at either end of a chunk split off; a list of
                  words (JSONL/Parquet lists, or JSON lists in CSV with --pre-tokenized) is used as given
A model trained on text pairs reads both columns. Rows whose inputs are empty get no prediction and
say why in `predict_error`; none is dropped. Input columns are never overwritten: an input column named
like an output is refused unless --output-prefix gives the outputs other names.
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

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.cli import add_model_arguments, add_tracking_argument, tracking_uri
from flows.temporary_server import temporary_api
from schemas.config import DEFAULT_RETRIES, EVAL_BATCH_SIZE, CacheConfig, TrackingConfig, check_model_name
from schemas.errors import ConfigError, DataError, FinetuneError, environment_fault, is_transient
from schemas.predict import PREDICT_CHUNK_ROWS, PredictConfig
from schemas.secrets import mask_text, mask_uri
from tasks.readers.tables import infer_format, iter_table
from tasks.runtime.logs import quiet_user_errors, step_logger
from tasks.runtime.preflight import check_writable_file


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


@task(name="load_model", **DEFAULT_RETRIES, retry_condition_fn=is_transient, persist_result=False, cache_policy=NO_CACHE)
def load_model(model_uri: str, tracking_uri: str | None, trust_remote_code: bool = False):
    import mlflow
    from mlflow.exceptions import MlflowException

    from tasks.runtime.tracking import check_reachable
    from tasks.serving.model_io import load_registered

    tracking_uri = TrackingConfig(uri=tracking_uri).resolved_uri()  # None: the URI is in MLFLOW_TRACKING_URI (it holds a secret)
    check_reachable(tracking_uri)
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
def predict(cfg: PredictConfig) -> dict:
    """Read the input in chunks, answer every row with usable inputs, write input + predictions chunk by chunk."""
    from tasks.serving.predictor import ERROR_COLUMN, PredictOptions, Predictor

    logger = step_logger()
    started = time.perf_counter()
    if cfg.runner == "ray":
        return predict_with_ray(cfg)
    source = Path(cfg.input)
    if not source.is_file():
        raise DataError(f"input file '{cfg.input}' not found")
    chunks = iter_input(source, infer_format(source, cfg.input_format, "--input-format"), cfg.encoding, cfg.chunk_rows)
    first = next(chunks)
    infer_format(Path(cfg.output), option="the output file's extension")
    check_writable_file(cfg.output, "the output file")
    model_uri = cfg.model_uri()
    model, tokenizer = load_model(model_uri, cfg.tracking_uri, cfg.trust_remote_code)
    options = PredictOptions(
        columns=cfg.columns,
        max_length=cfg.max_length,
        batch_size=cfg.batch_size,
        bf16=cfg.runtime == "torch" and use_bf16(cfg.precision),
        pre_tokenized=cfg.pre_tokenized,
        output_prefix=cfg.output_prefix,
        extra={"top_k": cfg.top_k} if cfg.top_k > 1 else {},
        explain=cfg.explain,
        explain_top=cfg.explain_top,
    )
    predictor = Predictor(model, tokenizer, options)
    predictor.check_columns(list(first.columns), f"'{source.name}'")
    if cfg.runtime == "onnx":
        predictor.model = onnx_runtime_model(model, tokenizer, cfg.quantize, CacheConfig(dir=cfg.cache_dir).resolved_dir())
    writer, rows_in, predicted = TableWriter(Path(cfg.output)), 0, 0
    try:
        for frame in itertools.chain([first], chunks):
            out = predictor.predict(frame)
            writer.write(out)
            rows_in, predicted = rows_in + len(out), predicted + int(out[cfg.output_prefix + ERROR_COLUMN].isna().sum())
    except BaseException:
        writer.discard()
        raise
    writer.close()
    summary = {
        "model_uri": model_uri,
        "task": predictor.info["task"],
        "rows_in": rows_in,
        "rows_predicted": predicted,
        "rows_not_predicted": rows_in - predicted,
        "runtime": f"torch ({'bf16' if options.bf16 else 'fp32'})" if cfg.runtime == "torch" else f"onnx ({cfg.quantize})",
        "output": str(cfg.output),
        "seconds": round(time.perf_counter() - started, 2),
        **({"explain_seconds_per_row": round(predictor.explain_seconds / max(predicted, 1), 4)} if cfg.explain else {}),
    }
    logger.info(
        "predict: %d rows in = %d predicted + %d not predicted (empty inputs); wrote %s",
        summary["rows_in"],
        summary["rows_predicted"],
        summary["rows_not_predicted"],
        cfg.output,
    )
    return summary


def predict_with_ray(cfg: PredictConfig) -> dict:
    """--runner ray: the input in chunks over a pool of Ray actors, a folder of part files and a manifest."""
    from dataclasses import asdict

    from tasks.serving.predictor import PredictOptions
    from tasks.serving.ray_predict import predict_on_ray

    options = PredictOptions(
        columns=cfg.columns,
        max_length=cfg.max_length,
        batch_size=cfg.batch_size,
        bf16=use_bf16(cfg.precision),
        pre_tokenized=cfg.pre_tokenized,
        output_prefix=cfg.output_prefix,
        extra={"top_k": cfg.top_k} if cfg.top_k > 1 else {},
        explain=cfg.explain,
        explain_top=cfg.explain_top,
    )
    manifest = predict_on_ray(cfg, cfg.model_uri(), asdict(options))
    step_logger().info(
        "predict on Ray: %d rows in = %d rows out (%d predicted) over %d workers in %.1f s; wrote %s",
        manifest["rows_in"],
        manifest["rows_out"],
        manifest["rows_predicted"],
        cfg.workers,
        manifest["seconds"],
        cfg.output,
    )
    return {
        "model_uri": manifest["model_uri"],
        "task": "",
        "rows_in": manifest["rows_in"],
        "rows_predicted": manifest["rows_predicted"],
        "rows_not_predicted": manifest["rows_out"] - manifest["rows_predicted"],
        "runtime": f"torch on Ray ({cfg.workers} workers)",
        "output": str(cfg.output),
        "seconds": manifest["seconds"],
    }


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python flows/predict.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("input", help="file of rows: CSV/TSV/JSONL/JSON/Parquet")
    parser.add_argument("output", help="where to write input columns + predictions; format from the extension")
    add_model_arguments(parser)
    parser.add_argument("--text-column", help="input column holding the text (default: the column the model was trained on, else text)")
    parser.add_argument(
        "--text-pair-column",
        help="for a model trained on text pairs: the column holding the second text (default: the column it was trained on)",
    )
    parser.add_argument("--question-column", help="question_answering: the column holding the question (default: as trained)")
    parser.add_argument("--context-column", help="question_answering: the column holding the context (default: as trained)")
    parser.add_argument(
        "--top-k",
        type=int,
        default=1,
        help="question_answering: also write top_answers, a JSON list of the N best answers with offsets and scores (default: 1, none)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="add `explanation`: a JSON list of [word, score] per row in its word order (integrated gradients on the word "
        "embeddings; a positive score pushes towards the prediction; one list per predicted label, entity or answer "
        "boundary where there are several), and `explanation_delta`: the row's completeness gap (its words' scores sum to "
        "the output's difference from an all-pad input within it); costs about 0.2-1 s a row on a CPU, printed with the run",
    )
    parser.add_argument("--explain-top", type=int, metavar="K", help="with --explain: keep only the K words of largest |score|")
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
    parser.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE, help=f"inputs per forward pass (default: {EVAL_BATCH_SIZE})")
    parser.add_argument("--max-length", type=int, help="tokens read per input (default: as the model was trained, which evaluation used)")
    parser.add_argument(
        "--output-prefix",
        default="",
        help="prefix of the output columns, for an input that already has columns named like them (default: none; such an input is refused)",
    )
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
    ray = parser.add_argument_group("on a Ray cluster (make setup-ray)")
    ray.add_argument(
        "--runner",
        choices=["local", "ray"],
        default="local",
        help="local (default): this process; ray: chunks of the input (a file, a folder of files or a glob of CSV/TSV/JSONL/Parquet) "
        "answered by a pool of Ray actors that each load the model once; OUTPUT is then a folder of part files with manifest.json",
    )
    ray.add_argument("--workers", type=int, default=2, help="--runner ray: actors (default: 2)")
    ray.add_argument("--worker-cpus", type=float, default=1.0, help="--runner ray: CPUs per actor (default: 1)")
    ray.add_argument("--worker-gpus", type=float, default=0.0, help="--runner ray: GPUs per actor (default: 0)")
    ray.add_argument("--ray-address", help="--runner ray: the cluster (default: $RAY_ADDRESS, else a local Ray for the run)")
    ray.add_argument(
        "--id-column", help="--runner ray: the input's own id column kept on every row (default: row_id, the 0-based position)"
    )
    ray.add_argument("--output-format", choices=["csv", "jsonl", "parquet"], help="--runner ray: the part files' format (default: parquet)")
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=PREDICT_CHUNK_ROWS,
        help=f"rows read, answered and written at a time (default: {PREDICT_CHUNK_ROWS}); --runner ray: a chunk, one task and one part "
        "file (smaller: finer retries and balance)",
    )
    add_tracking_argument(parser)
    return parser


def config_from(args: argparse.Namespace) -> PredictConfig:
    """The typed predict config from parsed arguments (credentials in --tracking-uri moved out first)."""
    given = {"text": args.text_column, "text_pair": args.text_pair_column, "question": args.question_column, "context": args.context_column}
    return PredictConfig(
        input=args.input,
        output=args.output,
        model=args.model,
        name=args.name,
        alias=args.alias,
        version=args.version,
        tracking_uri=tracking_uri(args.tracking_uri),
        columns={role: column for role, column in given.items() if column},
        input_format=args.input_format,
        encoding=args.encoding,
        batch_size=args.batch_size,
        max_length=args.max_length,
        trust_remote_code=args.trust_remote_code,
        pre_tokenized=args.pre_tokenized,
        runtime=args.runtime,
        quantize=args.quantize or "int8",
        precision=args.precision,
        output_prefix=args.output_prefix,
        top_k=args.top_k,
        explain=args.explain,
        explain_top=args.explain_top,
        runner=args.runner,
        workers=args.workers,
        worker_cpus=args.worker_cpus,
        worker_gpus=args.worker_gpus,
        ray_address=args.ray_address,
        id_column=args.id_column,
        output_format=args.output_format,
        chunk_rows=args.chunk_rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quantize and args.runtime != "onnx":
        parser.error("--quantize applies to --runtime onnx only")
    from pydantic import ValidationError

    quiet_user_errors()
    try:
        if not args.model:
            check_model_name(args.name)
        try:
            cfg = config_from(args)
        except ValidationError as err:
            raise ConfigError("; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())) from None
        with temporary_api():  # without PREFECT_API_URL: a temporary server that dies with this process
            summary = predict(cfg)
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
        f"{summary['rows_in']} rows in = {summary['rows_predicted']} predicted + {summary['rows_not_predicted']} not predicted (empty inputs)"
    )
    print(f"model   {mask_text(summary['model_uri'])} ({summary['runtime']})\noutput  {summary['output']}")
    if "explain_seconds_per_row" in summary:
        print(f"explain {summary['explain_seconds_per_row']:.3f} s a row")
    return 0


if __name__ == "__main__":
    sys.exit(main())
