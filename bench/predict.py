"""Batch prediction at scale: rows/s and peak RSS of `flows/predict.py` on 100,000 and 1,000,000 short rows.

    python bench/predict.py [--rows 100000 1000000] [--model URI --tracking-uri URI]

Without --model it logs a tiny random BERT (2 layers, width 32, the real MiniLM tokenizer) to a
temporary MLflow store, so the figures show the pipeline around the model (read, tokenize,
predict, write) rather than the model's own speed. Each size runs in a fresh process (the
predict CLI as a user runs it, Prefect's temporary server included); peak RSS is that process's
own (ru_maxrss), not the server's. Streaming is flat when RSS at 1M rows is within 1.2x of 100k.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tiny_model(workdir: Path) -> tuple[str, str]:
    """(model URI, tracking URI) of a tiny random BERT logged as an MLflow transformers model."""
    import shutil

    import mlflow
    import torch
    import transformers
    from transformers import BertConfig, BertForSequenceClassification

    from schemas.config import EMBEDDED_MODEL, embedded_path
    from tasks.tokenize import TOKENIZER_FILES

    folder = workdir / "tiny"
    folder.mkdir()
    for name in TOKENIZER_FILES:
        if (embedded_path(*EMBEDDED_MODEL) / name).is_file():
            shutil.copy(embedded_path(*EMBEDDED_MODEL) / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    pipe = transformers.pipeline("text-classification", model=str(folder), tokenizer=str(folder), device="cpu")
    with mlflow.start_run():
        info = mlflow.transformers.log_model(
            pipe, name="model", task="text-classification", pip_requirements=[f"transformers=={transformers.__version__}"]
        )
    return info.model_uri, uri


def write_input(path: Path, rows: int) -> None:
    words = ["great", "awful", "moving", "dull", "superb", "boring", "fun", "weak"]
    with open(path, "w") as out:
        out.write("id,text\n")
        for i in range(rows):
            out.write(f"{i},{words[i % 8]} {words[(i * 7 + 3) % 8]} film number {i}\n")


def child(args) -> None:
    """One predict run in this process; prints rows/s and this process's peak RSS as JSON."""
    from tasks import env

    env.apply()
    from flows.predict import main

    started = time.perf_counter()
    code = main([args.input, args.output, "--model", args.model, "--tracking-uri", args.tracking_uri])
    wall = time.perf_counter() - started
    print(json.dumps({"code": code, "wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--model", help="model URI to predict with (default: a tiny random BERT logged here)")
    parser.add_argument("--tracking-uri", help="MLflow store holding --model")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    from tasks import env

    env.apply()
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        workdir = Path(tmp)
        model, tracking = (args.model, args.tracking_uri) if args.model else tiny_model(workdir)
        results = []
        for rows in args.rows:
            source, out = workdir / f"in-{rows}.csv", workdir / f"out-{rows}.csv"
            write_input(source, rows)
            cmd = [
                sys.executable,
                __file__,
                "--child",
                "--input",
                str(source),
                "--output",
                str(out),
                "--model",
                model,
                "--tracking-uri",
                tracking,
            ]
            done = subprocess.run(
                cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PREFECT_HOME": str(workdir / "prefect")}
            )
            if done.returncode != 0:
                sys.exit(f"predict failed:\n{done.stderr[-3000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            if run["code"] != 0:
                sys.exit(f"predict exited {run['code']}:\n{done.stderr[-3000:]}")
            results.append(
                {
                    "rows": rows,
                    "rows_s": round(rows / run["wall_s"]),
                    "wall_s": round(run["wall_s"], 1),
                    "peak_rss_mb": round(run["peak_rss_mb"]),
                    "input_mb": round(source.stat().st_size / 1e6, 1),
                }
            )
            r = results[-1]
            print(
                f"{rows:>9,} rows  {r['wall_s']:7.1f} s  {r['rows_s']:>7,} rows/s  peak RSS {r['peak_rss_mb']:>5} MB  (input {r['input_mb']} MB)"
            )
            source.unlink()
            out.unlink()
        if len(results) > 1:
            ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
            print(
                f"peak RSS at {results[-1]['rows']:,} rows is {ratio:.2f}x that at {results[0]['rows']:,} ({'flat' if ratio <= 1.2 else 'NOT flat'}: target <= 1.2x)"
            )
        print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
