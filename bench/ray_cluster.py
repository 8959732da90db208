"""Fine-tuning and batch prediction on a two-node Ray cluster on this machine, against the same jobs without Ray.

    python bench/ray_cluster.py [--train-rows 4000] [--predict-rows 100000] [--skip-train]

The cluster is Ray's own cluster utilities: a head node and a worker node of one CPU each (ray.cluster_utils.Cluster).
1. Training: the default job on data.max_rows rows for one epoch, with train.nproc=2 (torchrun on this machine) and
   with train.runner=ray train.workers=2 on the cluster, same rows and seed: the validation metrics of both (the
   acceptance: within 0.02), wall times and training examples/s per worker.
2. Prediction: --predict-rows rows of the default data's texts (cycled) scored by the Ray-trained model, with local
   predict (one process, both cores) and with --runner ray --workers 2 --worker-cpus 1, all in fp32: rows/s, Ray's
   overhead, label agreement; then the Ray run again with the worker node removed once a few parts are written and
   added back 5 s later: rows in = rows out, every row id once.
3. The capacity table: measured rows/s and examples/s per worker projected to 10M and 100M rows on 1, 8 and 64
   workers (linear in workers: it assumes storage and the network keep up; see deployments/README.md).
Last line JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._runner import ROOT, run_flow  # noqa: E402


def predict(workdir: Path, source: Path, out: Path, summary: dict, *extra: str, lose_node=None) -> float:
    """Seconds of one flows/predict.py process; lose_node() is called once 3 part files exist (a Ray run)."""
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    command = [sys.executable, "flows/predict.py", str(source), str(out), "--name", summary["model_name"]]
    command += ["--version", str(summary["model_version"]), "--tracking-uri", uri, "--precision", "fp32", *extra]
    started = time.perf_counter()
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if lose_node is not None:
        while len(list(out.glob("part-*"))) < 3 and run.poll() is None:
            time.sleep(0.2)
        if run.poll() is None:
            lose_node()
    _, stderr = run.communicate()
    if run.returncode != 0:
        sys.exit(f"predict failed:\n{stderr[-3000:]}")
    return time.perf_counter() - started


def ray_rows(out: Path) -> tuple[pd.DataFrame, dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    frame = pd.concat([pd.read_parquet(out / p["part"]) for p in manifest["parts"]], ignore_index=True)
    return frame.sort_values("row_id").reset_index(drop=True), manifest


def capacity(per_worker_rows_s: float, per_worker_examples_s: float | None) -> list[dict]:
    table = []
    for workers in (1, 8, 64):
        row = {"workers": workers}
        for rows in (10_000_000, 100_000_000):
            row[f"predict_{rows // 1_000_000}M_hours"] = round(rows / (per_worker_rows_s * workers) / 3600, 2)
            if per_worker_examples_s:
                row[f"train_epoch_{rows // 1_000_000}M_hours"] = round(rows / (per_worker_examples_s * workers) / 3600, 1)
        table.append(row)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=4000, help="data.max_rows of the training runs (default: 4000)")
    parser.add_argument("--predict-rows", type=int, default=100_000, help="rows to score (default: 100000)")
    parser.add_argument("--skip-train", action="store_true", help="train once locally (one epoch) instead of comparing the runners")
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    from schemas.config import DataConfig
    from tasks.ingest import read_source
    from tasks.runtime import env

    env.apply()
    result: dict = {"cpus": os.cpu_count()}
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = [cluster.add_node(num_cpus=1)]
    cluster.wait_for_nodes()
    try:
        with tempfile.TemporaryDirectory(prefix="ff-bench-ray-") as tmp:
            workdir = Path(tmp)
            common = [f"data.max_rows={args.train_rows}", "train.epochs=1", "registry.promote=false"]
            if args.skip_train:
                trained = run_flow(workdir, *common, "registry.model_name=ray-bench")
            else:
                torchrun = run_flow(workdir, *common, "train.nproc=2", "registry.model_name=torchrun")
                trained = run_flow(
                    workdir,
                    *common,
                    "train.runner=ray",
                    "train.workers=2",
                    "train.worker_cpus=1",
                    f"sweep.ray_address={cluster.address}",
                    "registry.model_name=on-ray",
                )
                steps = {}
                for name, summary in (("torchrun", torchrun), ("ray", trained)):
                    from mlflow import MlflowClient

                    uri = f"sqlite:///{workdir / 'mlflow.db'}"
                    facts = json.loads(open(MlflowClient(uri, uri).download_artifacts(summary["run_id"], "data/steps.json")).read())
                    steps[name] = facts["fine_tune"]
                    result[f"train_{name}"] = {
                        "val_f1_macro": round(summary["val_metrics"]["f1_macro"], 4),
                        "val_accuracy": round(summary["val_metrics"]["accuracy"], 4),
                        "fine_tune_seconds": round(summary["step_seconds"]["fine_tune"], 1),
                        "wall_seconds": round(summary["process_s"], 1),
                        "examples_s_per_worker": round((steps[name]["train_samples_per_second"] or 0) / 2, 2),
                    }
                gap = abs(result["train_ray"]["val_f1_macro"] - result["train_torchrun"]["val_f1_macro"])
                result["train_val_f1_gap"] = round(gap, 4)
                print(
                    f"training, {args.train_rows:,} rows, 1 epoch: torchrun (nproc=2) val f1_macro {result['train_torchrun']['val_f1_macro']:.4f} "
                    f"in {result['train_torchrun']['fine_tune_seconds']:.0f} s; Ray (2 workers) {result['train_ray']['val_f1_macro']:.4f} "
                    f"in {result['train_ray']['fine_tune_seconds']:.0f} s; gap {gap:.4f} (acceptance <= 0.02)",
                    flush=True,
                )
            texts = read_source(DataConfig(), "classification")[0]["text"].dropna().tolist()
            source = workdir / "rows.csv"
            pd.DataFrame({"text": [texts[i % len(texts)] for i in range(args.predict_rows)]}).to_csv(source, index=False)
            local_s = predict(workdir, source, workdir / "local.csv", trained)
            ray_s = predict(
                workdir, source, workdir / "ray-out", trained, "--runner", "ray", "--workers", "2", "--ray-address", cluster.address
            )

            def lose_node():
                cluster.remove_node(worker[0])
                time.sleep(5)
                worker[0] = cluster.add_node(num_cpus=1)

            lost_s = predict(
                workdir, source, workdir / "ray-lost", trained, "--runner", "ray", "--workers", "2", "--ray-address", cluster.address,
                "--chunk-rows", "5000", lose_node=lose_node,
            )  # fmt: skip
            local = pd.read_csv(workdir / "local.csv")
            answered, manifest = ray_rows(workdir / "ray-out")
            lost, lost_manifest = ray_rows(workdir / "ray-lost")
            rows = args.predict_rows
            result["predict"] = {
                "rows": rows,
                "local_rows_s": round(rows / local_s, 1),
                "ray_rows_s": round(rows / ray_s, 1),
                "ray_vs_local": round(local_s / ray_s, 3),
                "ray_in_actors_seconds": manifest["seconds"],
                "ray_overhead_seconds": round(ray_s - manifest["seconds"], 1),
                "agreement": round(float((answered["predicted_label"] == local["predicted_label"]).mean()), 5),
                "lost_node_rows_in_out": [lost_manifest["rows_in"], lost_manifest["rows_out"]],
                "lost_node_ids_once": sorted(lost["row_id"]) == list(range(rows)),
                "lost_node_agreement": round(float((lost["predicted_label"] == local["predicted_label"]).mean()), 5),
                "lost_node_seconds": round(lost_s, 1),
            }
            p = result["predict"]
            print(
                f"predict {rows:,} rows (fp32): local {p['local_rows_s']:.0f} rows/s, Ray 2 workers {p['ray_rows_s']:.0f} rows/s "
                f"({p['ray_vs_local']:.2f}x local; Ray start, actors and model loads {p['ray_overhead_seconds']:.0f} s of {ray_s:.0f}); "
                f"labels agree on {100 * p['agreement']:.2f}%",
                flush=True,
            )
            print(
                f"worker node removed mid-run and re-added: rows in/out {p['lost_node_rows_in_out']}, every id once: "
                f"{p['lost_node_ids_once']}, agreement {100 * p['lost_node_agreement']:.2f}%, {lost_s:.0f} s",
                flush=True,
            )
            per_worker = rows / manifest["seconds"] / 2
            train_rate = result.get("train_ray", {}).get("examples_s_per_worker")
            result["capacity"] = capacity(per_worker, train_rate)
            print(f"capacity (per worker of 1 CPU: {per_worker:.0f} rows/s predict, {train_rate or float('nan'):.1f} examples/s train):")
            for row in result["capacity"]:
                print("  " + "  ".join(f"{k} {v}" for k, v in row.items()))
    finally:
        cluster.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
