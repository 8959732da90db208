"""Batch prediction: ours vs `transformers.pipeline` on the same model and rows, and rows/s + peak RSS at scale.

    python bench/predict.py [--vs-pipeline 4000] [--rows 100000 1000000] [--model URI --tracking-uri URI]

Part 1 (--vs-pipeline N; 0 skips it): the embedded MiniLM with a fresh two-label head, N real review texts of
the default corpus. Ours is the predict flow's own per-chunk path (`tasks.serving.predictor.Predictor.predict` with
`flows/predict.py`'s default batch size and precision: length-sorted batches, no gradients, bf16 autocast on a CPU
with native bf16, again in fp32, and as `--runtime onnx` runs it: dynamic int8 under onnxruntime, the export not timed);
the baseline is `transformers.pipeline("text-classification", ...)` called as its docs show (one text at a time), and
again with batch_size=32. All in this process, one after the other, each path twice over the rows: the faster pass
counts (the steady state of a large file) and the first is in the JSON too (`*_first_pass_rows_s`,
`ratio_batched_first_pass`); the labels of all runs are compared (same model).
JSON: `ratio` is the default path against one text at a time; `ratio_batched` against batch_size=32, for the default
path on a CPU with native bf16 and for the faster of fp32 and int8 on one without (`ratio_batched_path` names it,
`agreement_batched_path` its labels' agreement with the pipeline).

Part 2:
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
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TASK = "classification"  # the default data's task, and what transformers' text-classification pipeline does


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


def versus_pipeline(rows: int) -> dict:
    """rows/s of ours and of transformers.pipeline on the same model (MiniLM, fresh head) and the same real texts."""
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from flows.predict import use_bf16
    from schemas.config import MAX_LENGTH, DataConfig, ModelConfig, resolve_model_path
    from schemas.predict import PredictConfig
    from tasks.clean import clean_frame
    from tasks.ingest import read_source
    from tasks.serving.predictor import PredictOptions, Predictor

    data = DataConfig()
    raw, _ = read_source(data, TASK)
    frame = clean_frame(raw, data, TASK)[0].head(rows)[["text"]].reset_index(drop=True)
    texts = frame["text"].tolist()
    path = resolve_model_path(ModelConfig().name_or_path)
    torch.manual_seed(0)
    labels = {0: "neg", 1: "pos"}
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    tokenizer = AutoTokenizer.from_pretrained(path)
    model.config.finetune_flow = {"task": TASK, "target": {"labels": ["neg", "pos"]}, "decision": {}, "max_length": MAX_LENGTH}
    mean_tokens = sum(len(ids) for ids in tokenizer(texts)["input_ids"]) / len(texts)
    print(
        f"vs pipeline: MiniLM (fresh 2-label head), {len(texts):,} review texts, {mean_tokens:.1f} tokens on average, {torch.get_num_threads()} threads"
    )

    first: dict[str, float] = {}  # each path's first pass over the rows (rows/s)

    def timed(name: str, fn):
        """Two passes over the rows: the faster one's rows/s (the steady state a large file runs at, once the kernels
        of each batch shape are built: oneDNN's bf16 ones are built per shape, MKL's fp32 ones are not) and the output;
        the first pass's rows/s goes in `first`."""
        rates = []
        for _ in range(2):
            started = time.perf_counter()
            out = fn()
            rates.append(len(texts) / (time.perf_counter() - started))
        first[name] = rates[0]
        return max(rates), out

    defaults = PredictConfig(input="-", output="-")  # what flows/predict.py runs with when given no options
    bf16 = use_bf16(defaults.precision)  # auto: bf16 on a CPU with native bf16
    options = PredictOptions(batch_size=defaults.batch_size, bf16=bf16)
    predictor, predictor_fp32 = Predictor(model, tokenizer, options), Predictor(model, tokenizer, replace(options, bf16=False))
    # One untimed pass over a few rows first: the process's first forward passes pay torch's one-off set-up (kernels,
    # allocator), which would otherwise land on whichever path runs first (was 166 vs 216 rows/s for the same fp32 path).
    predictor.predict(frame.head(256))
    ours_s, ours = timed("ours", lambda: predictor.predict(frame))
    fp32_s, fp32 = timed("fp32", lambda: predictor_fp32.predict(frame))
    # The fast path of a CPU without native bf16: `flows/predict.py --runtime onnx` (dynamic int8), export excluded (cached).
    with tempfile.TemporaryDirectory(prefix="bench-predict-onnx-") as onnx_cache:
        from flows.predict import onnx_runtime_model

        predictor_int8 = Predictor(model, tokenizer, replace(options, bf16=False))
        predictor_int8.model = onnx_runtime_model(model, tokenizer, "int8", Path(onnx_cache))
        predictor_int8.predict(frame.head(256))  # the session's first runs, untimed as above
        int8_s, int8 = timed("onnx_int8", lambda: predictor_int8.predict(frame))
    pipe = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    pipe_s, piped = timed("pipeline", lambda: pipe(texts, truncation=True, max_length=MAX_LENGTH))
    batched_s, batched = timed("pipeline_batch32", lambda: pipe(texts, truncation=True, max_length=MAX_LENGTH, batch_size=32))
    agree = sum(a == b["label"] for a, b in zip(ours["predicted_label"], piped)) / len(texts)
    agree_fp32 = sum(a == b["label"] for a, b in zip(fp32["predicted_label"], piped)) / len(texts)
    agree_batched = sum(a["label"] == b["label"] for a, b in zip(piped, batched)) / len(texts)
    agree_int8 = sum(a == b["label"] for a, b in zip(int8["predicted_label"], piped)) / len(texts)
    # The ceiling: forward FLOPs of the real (unpadded) tokens against this machine's fp32 matmul peak, now. No fp32
    # path can beat the batched pipeline by more than peak / (its rate of useful FLOPs).
    from bench.peak import SHAPES, matmul_gflops

    peak_fp32 = matmul_gflops(*SHAPES["model 960x384@384x1536"], torch.float32)
    gflop_row = inference_flops_per_row(model, mean_tokens) / 1e9
    ceiling = peak_fp32 / (batched_s * gflop_row)
    # What counts against the batched pipeline: the default (bf16 where the CPU has it), else the faster of fp32 and int8.
    best_s, best_name, best_agree = (
        (ours_s, "bf16", agree) if bf16 else max((fp32_s, "fp32", agree_fp32), (int8_s, "onnx_int8", agree_int8))
    )
    print(f"  ours (Predictor, {'bf16' if bf16 else 'fp32'}, the default)  {ours_s:8.1f} rows/s")
    print(f"  ours (Predictor, fp32)               {fp32_s:8.1f} rows/s")
    print(f"  ours (--runtime onnx, int8)          {int8_s:8.1f} rows/s")
    print(f"  transformers.pipeline, one at a time {pipe_s:8.1f} rows/s   ours is {ours_s / pipe_s:.2f}x (target >= 5x)")
    print(
        f"  transformers.pipeline, batch_size=32 {batched_s:8.1f} rows/s   ours ({best_name}) is {best_s / batched_s:.2f}x (target >= 5x)"
    )
    name_of = {"bf16": "ours", "fp32": "fp32", "onnx_int8": "onnx_int8"}
    first_ratio = first[name_of[best_name]] / first["pipeline_batch32"]
    print(
        f"  first passes (kernels of new batch shapes built on the way): ours {first['ours']:.1f}, pipeline "
        f"{first['pipeline']:.1f}, batch_size=32 {first['pipeline_batch32']:.1f} rows/s; ours ({best_name}) is "
        f"{first_ratio:.2f}x the batched pipeline there"
    )
    print(
        f"  useful fp32 work (forward FLOPs of the real tokens, {gflop_row:.3f} GFLOP a row) against this machine's fp32 matmul "
        f"peak of {peak_fp32:.0f} GFLOP/s: ours {fp32_s * gflop_row / peak_fp32:.0%}, pipeline batch_size=32 "
        f"{batched_s * gflop_row / peak_fp32:.0%}; an fp32 path at 100% of the peak would be {ceiling:.2f}x the batched pipeline"
    )
    print(
        f"  labels agree: ours vs pipeline {agree:.2%} (ours in fp32: {agree_fp32:.2%}, int8: {agree_int8:.2%}), "
        f"pipeline batched vs one at a time {agree_batched:.2%}"
    )
    return {
        "ours_rows_s": round(ours_s, 1),
        "pipeline_rows_s": round(pipe_s, 1),
        "ratio": round(ours_s / pipe_s, 2),
        "pipeline_batch32_rows_s": round(batched_s, 1),
        "ratio_batched": round(best_s / batched_s, 2),
        "ratio_batched_path": best_name,
        "agreement": round(agree, 4),
        "agreement_batched_path": round(best_agree, 4),
        "ours_precision": "bf16" if bf16 else "fp32",
        "ours_fp32_rows_s": round(fp32_s, 1),
        "ours_onnx_int8_rows_s": round(int8_s, 1),
        "agreement_onnx_int8": round(agree_int8, 4),
        "fp32_peak_gflops": round(peak_fp32, 1),
        "ours_fp32_peak_fraction": round(fp32_s * gflop_row / peak_fp32, 3),
        "pipeline_batch32_peak_fraction": round(batched_s * gflop_row / peak_fp32, 3),
        "fp32_ceiling_vs_batched": round(ceiling, 2),
        **{f"{name}_first_pass_rows_s": round(rate, 1) for name, rate in first.items()},
        "ratio_batched_first_pass": round(first_ratio, 2),
    }


def inference_flops_per_row(model, mean_tokens: float) -> float:
    """Forward FLOPs of one row: 2 x non-embedding parameters per real token, plus attention's two sequence-by-sequence
    products per layer (QK^T and AV: 4 x length x hidden a token), as bench/throughput.py counts training's."""
    params = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    config = model.config
    return mean_tokens * (2 * params + 4 * config.num_hidden_layers * mean_tokens * config.hidden_size)


def child(args) -> None:
    """One predict run in this process; prints rows/s and this process's peak RSS as JSON."""
    from tasks.runtime import env

    env.apply()
    from flows.predict import main

    started = time.perf_counter()
    code = main([args.input, args.output, "--model", args.model, "--tracking-uri", args.tracking_uri])
    wall = time.perf_counter() - started
    print(json.dumps({"code": code, "wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vs-pipeline", type=int, default=4000, metavar="N", help="rows for ours vs transformers.pipeline (0: skip)")
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000], help="sizes for the scale runs (none: skip)")
    parser.add_argument("--model", help="model URI to predict with (default: a tiny random BERT logged here)")
    parser.add_argument("--tracking-uri", help="MLflow store holding --model")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    from tasks.runtime import env

    env.apply()
    versus = versus_pipeline(args.vs_pipeline) if args.vs_pipeline else {}
    if not args.rows:
        print(json.dumps(versus))
        return
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
        rss = {
            f"rss_{r['rows'] // 1000}k_mb" if r["rows"] < 1_000_000 else f"rss_{r['rows'] // 1_000_000}m_mb": r["peak_rss_mb"]
            for r in results
        }
        print(json.dumps({**versus, **rss, "results": results}))


if __name__ == "__main__":
    main()
