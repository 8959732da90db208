"""Explanations: are they faithful, are they complete, and what do they cost?

    python bench/explain.py [--only reviews,multi_label,regression] [--examples 100] [--rows 1000] [--max-rows N]

1. Faithfulness (ERASER): each run explains `explain.examples` of its most confident validation errors and as many
   correct rows (2 x 100 = 200 by default); comprehensiveness (the drop in the predicted output when the top 20% of
   a row's words are removed) against the same number of random words removed, and sufficiency. Runs: the default job
   (reviews), examples/multi_label.yaml and examples/regression.yaml (`--max-rows` samples the examples' rows).
2. Cost in the flow: the default job cold with explain.examples=0, then with the default explain.examples (training
   re-used from the cache: only evaluate, log and register run again); the extra evaluate seconds as a share of the
   cold run's wall time.
3. `flows/predict.py --explain` on --rows rows of the default data with the default job's model, against the same
   command without --explain: seconds per row; completeness: each row's word scores summed against the model's
   target(input) - target(baseline), recomputed here, against the row's own logged `explanation_delta` (allowing
   1e-6 per word for the JSON's 6-decimal scores and 1e-4 for re-evaluating the logits one row at a time) and next
   to the run's mean explain_delta; every row's words are its text's words, in order.
4. The defaults (issue: defaults that win): each run's first, cold flow prints its metric against its own TF-IDF
   baseline, the learning rate the range test chose and the range test's share of the run (bench/defaults.py's line).
Last line JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._runner import ROOT, run_flow  # noqa: E402
from bench.defaults import defaults_row  # noqa: E402
from examples.prepare_data import prepare  # noqa: E402

ROUNDING = 1e-6  # the JSON's scores carry 6 decimals: each word's rounding
REEVALUATED = 1e-4  # the two logits recomputed here, one row at a time, vs predict's padded batches (float32)
RUNS = {
    "reviews": [],
    "multi_label": ["--config", "examples/multi_label.yaml"],
    "regression": ["--config", "examples/regression.yaml"],
}


def run_metrics(workdir: Path, run_id: str) -> dict:
    from mlflow import MlflowClient

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    return MlflowClient(uri, uri).get_run(run_id).data.metrics


def faithfulness(name: str, metrics: dict) -> dict:
    comp, rand = metrics["explain_comprehensiveness"], metrics["explain_random_comprehensiveness"]
    row = {
        "comprehensiveness": round(comp, 4),
        "random_comprehensiveness": round(rand, 4),
        "ratio": round(comp / rand, 2) if rand > 0 else None,
        "sufficiency": round(metrics["explain_sufficiency"], 4),
        "delta": round(metrics["explain_delta"], 4),
    }
    print(
        f"{name:<12} comprehensiveness {comp:.4f} vs random words {rand:.4f} ({row['ratio']}x; target >= 2x)  "
        f"sufficiency {row['sufficiency']:.4f}  mean |delta| {row['delta']:.4f}",
        flush=True,
    )
    return row


def words_in_order(words: list[str], text: str) -> bool:
    at = 0
    for word in words:
        found = text.find(word, at)
        if found < 0:
            return False
        at = found + len(word)
    return True


def completeness(model, tokenizer, frame: pd.DataFrame, explained: pd.DataFrame) -> dict:
    """Each row's summed word scores against target(input) - target(baseline), the baseline being the input with every
    piece but [CLS]/[SEP] replaced by [PAD] (task_types/explain.py), the target the predicted label's logit."""
    import torch

    model.eval()
    length = int(model.config.finetune_flow.get("max_length") or 128)
    label2id = model.config.label2id
    pad = tokenizer.pad_token_id
    specials = set(tokenizer.all_special_ids) - {pad, tokenizer.unk_token_id}
    gaps, relative, excess, ordered = [], [], [], 0
    with torch.no_grad():
        for text, (_, row) in zip(frame["text"], explained.iterrows()):
            if isinstance(row.get("predict_error"), str):  # an unusable row (e.g. blank text): nothing explained
                continue
            pairs = json.loads(row["explanation"])
            ordered += words_in_order([w for w, _ in pairs], text)
            encoded = tokenizer([text], truncation=True, max_length=length, return_tensors="pt")
            ids = encoded["input_ids"]
            baseline = torch.where(torch.isin(ids, torch.tensor(sorted(specials))), ids, torch.full_like(ids, pad))
            target = label2id[row["predicted_label"]]
            both = model(input_ids=torch.cat([ids, baseline]), attention_mask=encoded["attention_mask"].repeat(2, 1)).logits[:, target]
            difference = float(both[0] - both[1])
            gap = sum(s for _, s in pairs) - difference
            gaps.append(abs(gap))
            relative.append(abs(gap) / max(abs(difference), 1e-6))
            # the row's own logged delta, with room for the JSON's 6-decimal scores and float32 re-evaluation
            excess.append(abs(gap) - (abs(float(row["explanation_delta"])) + ROUNDING * len(pairs) + REEVALUATED))
    return {
        "mean_abs_gap": round(float(np.mean(gaps)), 4),
        "median_relative_gap": round(float(np.median(relative)), 4),
        "rows_within_5pct": round(float(np.mean(np.array(relative) <= 0.05)), 4),
        "rows_within_own_delta": round(float(np.mean(np.array(excess) <= 0)), 4),
        "largest_excess_over_own_delta": round(float(max(excess)), 6),
        "rows_words_in_order": round(ordered / len(gaps), 4),
        "rows_explained": len(gaps),
    }


def predict_explain(workdir: Path, summary: dict, rows: int, delta: float) -> dict:
    from schemas.config import DataConfig
    from tasks.ingest import read_source

    frame = read_source(DataConfig(), "classification")[0].dropna(subset=["text"]).tail(rows).reset_index(drop=True)[["text"]]
    source = workdir / "explain_rows.csv"
    frame.to_csv(source, index=False)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    times = {}
    for name, extra in {"plain": [], "explain": ["--explain"]}.items():
        out = workdir / f"predicted_{name}.csv"
        command = [sys.executable, "flows/predict.py", str(source), str(out), "--name", summary["model_name"]]
        command += ["--version", str(summary["model_version"]), "--tracking-uri", uri, *extra]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        times[name] = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"predict failed:\n{done.stderr[-3000:]}")
    explained = pd.read_csv(workdir / "predicted_explain.csv")
    plain = pd.read_csv(workdir / "predicted_plain.csv")
    import mlflow

    from tasks.serving.model_io import load_registered

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model, tokenizer = load_registered(f"models:/{summary['model_name']}/{summary['model_version']}")
    result = {
        "rows": len(frame),
        "seconds_per_row": round((times["explain"] - times["plain"]) / len(frame), 4),
        "plain_seconds": round(times["plain"], 1),
        "explain_seconds": round(times["explain"], 1),
        "same_labels": bool((explained["predicted_label"] == plain["predicted_label"]).all()),
        **completeness(model, tokenizer, frame, explained),
        "run_explain_delta": round(delta, 4),
    }
    print(
        f"predict --explain on {len(frame):,} rows: {result['seconds_per_row'] * 1000:.0f} ms a row more than without "
        f"({result['explain_seconds']:.0f} s vs {result['plain_seconds']:.0f} s); completeness: mean |sum - difference| "
        f"{result['mean_abs_gap']:.4f} (the run's mean |delta| {delta:.4f}), median {100 * result['median_relative_gap']:.1f}% "
        f"of the difference, {100 * result['rows_within_5pct']:.1f}% of rows within 5%, {100 * result['rows_within_own_delta']:.1f}% "
        f"within their own explanation_delta (largest excess {result['largest_excess_over_own_delta']:.2g}); words in order on "
        f"{100 * result['rows_words_in_order']:.1f}% of rows",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(RUNS), help="comma-separated runs (default: all)")
    parser.add_argument("--examples", type=int, default=100, help="explain.examples of the faithfulness runs (default: 100 = 200 rows)")
    parser.add_argument("--rows", type=int, default=1000, help="rows for predict --explain (default: 1000)")
    parser.add_argument("--max-rows", type=int, help="data.max_rows for the multi-label and regression examples")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for every run (a quick try)")
    args = parser.parse_args()
    from tasks.runtime import env

    env.apply()
    prepare(ROOT / ".cache" / "example-data")
    from schemas.config import ExplainConfig

    default_examples = ExplainConfig().examples
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="ff-bench-explain-") as tmp:
        workdir = Path(tmp)
        for name in args.only.split(","):
            options = [*RUNS[name], f"registry.model_name=explain-{name}", *args.set]
            options += [f"data.max_rows={args.max_rows}"] if args.max_rows and name != "reviews" else []
            if name == "reviews":
                cold = run_flow(workdir, *options, "explain.examples=0")
                results.setdefault("defaults", []).append(defaults_row(name, cold))
                default = run_flow(workdir, *options)
                extra = default["step_seconds"]["evaluate"] - cold["step_seconds"]["evaluate"]
                results["cost"] = {
                    "cold_wall_seconds": round(cold["process_s"], 1),
                    "explain_examples": default_examples,
                    "extra_evaluate_seconds": round(extra, 1),
                    "growth": round(extra / cold["process_s"], 4),
                }
                print(
                    f"reviews      explain.examples={default_examples} adds {extra:.1f} s to a cold run of {cold['process_s']:.0f} s "
                    f"({100 * results['cost']['growth']:.1f}%; target <= 10%)",
                    flush=True,
                )
            summary = run_flow(workdir, *options, f"explain.examples={args.examples}")
            if name != "reviews":  # its first, cold run: the defaults' figures (bench/defaults.py prints the same)
                results.setdefault("defaults", []).append(defaults_row(name, summary))
            metrics = run_metrics(workdir, summary["run_id"])
            results[name] = faithfulness(name, metrics)
            if name == "reviews" and args.rows:
                results["predict"] = predict_explain(workdir, summary, args.rows, metrics["explain_delta"])
    print(json.dumps(results))


if __name__ == "__main__":
    main()
