"""finetune-flow predict: score a file of texts with a registered model (default: the champion).

    python flows/predict.py INPUT OUTPUT [--model models:/NAME@champion] [--text-column text] [--text-pair-column COL]

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
    from flows import env as _env

    _env.apply()

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from schemas.config import RegistryConfig, TrackingConfig
from schemas.errors import ConfigError, DataError, FinetuneError, is_transient
from task_types import get_task_type
from tasks.ingest import infer_format, read_table
from tasks.logs import quiet_user_errors, step_logger


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


def write_table(frame: pd.DataFrame, path: Path) -> None:
    fmt = infer_format(path, option="the output file's extension")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("csv", "tsv"):
        frame.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif fmt == "json":
        frame.to_json(path, orient="records", force_ascii=False)
    else:
        frame.to_parquet(path, index=False)


@task(name="load_model", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=is_transient, persist_result=False, cache_policy=NO_CACHE)
def load_model(model_uri: str, tracking_uri: str):
    import mlflow
    from mlflow.exceptions import MlflowException

    from tasks.register import load_registered

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        return load_registered(model_uri)
    except MlflowException as err:
        raise ConfigError(f"cannot load {model_uri} from {tracking_uri}: {str(err).splitlines()[0]}; "
                          "set --model, --name/--alias or --version (python -m flows.registry list shows them)") from None


@flow(name="predict")
def predict(input_path: str, output_path: str, model_uri: str, tracking_uri: str, text_column: str | None = None,
            input_format: str = "auto", encoding: str = "utf-8", batch_size: int = 128, max_length: int = 512,
            text_pair_column: str | None = None, pre_tokenized: bool = False) -> dict:
    """Read the input, predict every non-empty text (or pair) with the model, write input + predictions."""
    from tasks.inference import logits_for_texts, model_task

    logger = step_logger()
    started = time.perf_counter()
    source = Path(input_path)
    if not source.is_file():
        raise DataError(f"input file '{input_path}' not found")
    frame = read_table(source, infer_format(source, input_format, "--input-format"), encoding)
    model, tokenizer = load_model(model_uri, tracking_uri)
    info = model_task(model.config)
    text_column = text_column or info.get("text_column") or "text"
    pair_column = (text_pair_column or info.get("text_pair_column") or "text_pair") if info["text_pair"] else None
    for column, flag in ((text_column, "--text-column"), (pair_column, "--text-pair-column")):
        if column is not None and column not in frame.columns:
            raise DataError(f"column '{column}' not found in '{source.name}'; columns are {[str(c) for c in frame.columns]}: set {flag}")

    def cells(column: str) -> list[str]:
        return ["" if not isinstance(v, (list, tuple, np.ndarray)) and pd.isna(v) else str(v) for v in frame[column].tolist()]

    texts = cells(text_column)
    pairs = cells(pair_column) if pair_column else None
    usable = pd.Series([t.strip() != "" and (pairs is None or p.strip() != "") for t, p in zip(texts, pairs or texts)], index=frame.index)
    rows = frame.index[usable]
    chosen = [t for t, ok in zip(texts, usable) if ok]
    chosen_pairs = [p for p, ok in zip(pairs, usable) if ok] if pairs is not None else None
    if get_task_type(info["task"]).word_level:  # words, tags and entity spans per row, windowed like training
        from tasks.word_inference import tag_outputs

        values = [v for v, ok in zip(frame[text_column].tolist(), usable) if ok]
        outputs = tag_outputs(model, tokenizer, values, min(max_length, tokenizer.model_max_length), batch_size, pre_tokenized=pre_tokenized)
    else:
        logits = logits_for_texts(model, tokenizer, chosen, min(max_length, tokenizer.model_max_length), batch_size, pairs=chosen_pairs)
        outputs = get_task_type(info["task"]).outputs(logits, info["target"])
    out = with_predictions(frame, outputs, info, rows)
    out["predict_error"] = usable.map(lambda ok: None if ok else "null or empty text" + (" or text pair" if pairs is not None else ""))
    write_table(out, Path(output_path))
    summary = {"model_uri": model_uri, "task": info["task"], "rows_in": len(frame), "rows_predicted": int(usable.sum()), "rows_not_predicted": int((~usable).sum()),
               "output": str(output_path), "seconds": round(time.perf_counter() - started, 2)}
    assert summary["rows_in"] == summary["rows_predicted"] + summary["rows_not_predicted"]
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
    parser.add_argument("--text-column", help="input column holding the text (default: the column the model was trained on, else text)")
    parser.add_argument("--text-pair-column", help="for a model trained on text pairs: the column holding the second text "
                        "(default: the column it was trained on)")
    parser.add_argument("--pre-tokenized", action="store_true", help="token_classification: text cells holding JSON lists are "
                        "words as given (lists in JSONL/Parquet always are)")
    parser.add_argument("--input-format", default="auto", choices=["auto", "csv", "tsv", "jsonl", "json", "parquet"], help="input format (default: from the extension)")
    parser.add_argument("--encoding", default="utf-8", help="text encoding of CSV/TSV/JSONL input (default: utf-8)")
    parser.add_argument("--batch-size", type=int, default=128, help="texts per forward pass (default: 128)")
    parser.add_argument("--max-length", type=int, default=512, help="tokens read per text (default: 512, capped by the model)")
    parser.add_argument("--tracking-uri", default=tracking.resolved_uri(), help="MLflow store (default: the project's mlruns/mlflow.db)")
    args = parser.parse_args(argv)
    quiet_user_errors()
    uri = resolve_model_uri(args.model, args.name, args.alias, args.version)
    try:
        summary = predict(args.input, args.output, uri, args.tracking_uri, args.text_column, args.input_format,
                          args.encoding, args.batch_size, args.max_length, args.text_pair_column, args.pre_tokenized)
    except FinetuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{summary['rows_in']} rows in = {summary['rows_predicted']} predicted + {summary['rows_not_predicted']} not predicted (empty text)")
    print(f"model   {summary['model_uri']}\noutput  {summary['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
