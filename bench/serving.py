"""ONNX for serving: the torch model vs its ONNX export (fp32 and dynamic int8) on the same unseen rows.

    .venv/bin/python bench/serving.py [--train-rows 4000] [--rows 4000] [--epochs 1|auto]

Fine-tunes the default model on a sample of the embedded reviews (the real flow, `data.max_rows=TRAIN_ROWS
train.epochs=EPOCHS`, into a scratch store; `auto` trains as the default job does), then predicts ROWS reviews the run
never saw with the predict flow's own per-chunk path (`tasks.serving.predictor.Predictor.predict` with `flows/predict.py`'s
default batch size) on each runtime, one after the other in this process: torch in fp32, torch under bf16 autocast (on a
CPU with native bf16: `flows/predict.py`'s default there), onnxruntime fp32 and onnxruntime int8 (what `make export`
writes and `flows/predict.py --runtime onnx` runs). Prints rows/s, the ratio to torch, the share of rows whose predicted
label agrees with torch (target for int8: >= 99%) and each runtime's accuracy on the true labels; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._runner import run_flow  # noqa: E402


def unseen_rows(cache: Path, rows: int, task: str):
    """ROWS cleaned reviews of the embedded corpus that are in none of the run's splits."""
    import pandas as pd

    from schemas.config import DataConfig
    from tasks.clean import clean_frame
    from tasks.ingest import read_source

    used = set()
    for part in cache.glob("split/*/*.parquet"):
        used |= set(pd.read_parquet(part, columns=["text"])["text"])
    data = DataConfig()
    frame = clean_frame(read_source(data, task)[0], data, task)[0]
    return frame[~frame["text"].isin(used)].head(rows).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=4000, help="data.max_rows of the fine-tune (default 4000)")
    parser.add_argument("--rows", type=int, default=4000, help="unseen reviews to predict (default 4000)")
    parser.add_argument("--epochs", default="1", help="train.epochs of the fine-tune: 1 (default, quick) or auto (as the default job)")
    args = parser.parse_args()
    from tasks.runtime import env

    env.apply()
    import mlflow
    import torch

    from flows.predict import use_bf16
    from schemas.predict import PredictConfig
    from tasks.serving.model_io import load_registered
    from tasks.serving.onnx_export import OnnxModel, export_onnx
    from tasks.serving.predictor import PredictOptions, Predictor

    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        workdir = Path(tmp)
        summary = run_flow(workdir, f"data.max_rows={args.train_rows}", f"train.epochs={args.epochs}", "registry.promote=false")
        uri = f"sqlite:///{workdir / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        model, tokenizer = load_registered(f"models:/{summary['model_name']}/{summary['model_version']}")
        frame = unseen_rows(workdir / "cache", args.rows, summary["task"])
        started = time.perf_counter()
        export_onnx(model, tokenizer, workdir / "onnx", "int8")
        export_s = time.perf_counter() - started
        defaults = PredictConfig(input="-", output="-")  # what flows/predict.py runs with when given no options
        runtimes = {  # name: (model, bf16 autocast)
            "torch": (model, False),
            **({"torch_bf16": (model, True)} if use_bf16(defaults.precision) else {}),  # predict's default on a CPU with native bf16
            "onnx_fp32": (OnnxModel(workdir / "onnx" / "model.onnx", model.config, torch.get_num_threads()), False),
            "onnx_int8": (OnnxModel(workdir / "onnx" / "model.int8.onnx", model.config, torch.get_num_threads()), False),
        }
        print(
            f"MiniLM-L6 fine-tuned on {args.train_rows:,} sampled reviews (train.epochs={args.epochs}; test accuracy {summary['test_accuracy']:.4f}); "
            f"{len(frame):,} unseen reviews, {torch.get_num_threads()} threads; export + int8 quantization took {export_s:.1f} s"
        )
        results, labels = {}, {}
        for name, (runtime, bf16) in runtimes.items():
            predictor = Predictor(runtime, tokenizer, PredictOptions(batch_size=defaults.batch_size, bf16=bf16))
            predictor.predict(frame.head(64))  # warm-up
            started = time.perf_counter()
            out = predictor.predict(frame)
            seconds = time.perf_counter() - started
            labels[name] = out["predicted_label"].tolist()
            results[name] = {
                "rows_s": round(len(frame) / seconds, 1),
                "accuracy": round(float((out["predicted_label"] == frame["label"]).mean()), 4),
                "agreement_with_torch": round(sum(a == b for a, b in zip(labels[name], labels["torch"])) / len(frame), 4),
            }
        base = results["torch"]
        for name, r in results.items():
            r["speed_vs_torch"] = round(r["rows_s"] / base["rows_s"], 2)
            print(
                f"  {name:<10} {r['rows_s']:8.1f} rows/s  {r['speed_vs_torch']:5.2f}x torch   labels agree with torch {r['agreement_with_torch']:.2%}"
                f"   accuracy {r['accuracy']:.4f} ({r['accuracy'] - base['accuracy']:+.4f})"
            )
        int8 = results["onnx_int8"]
        print(
            f"int8 agreement {int8['agreement_with_torch']:.2%} (target >= 99%): {'PASS' if int8['agreement_with_torch'] >= 0.99 else 'FAIL'}"
        )
        print(json.dumps({"rows": len(frame), "export_s": round(export_s, 1), **results}))


if __name__ == "__main__":
    main()
