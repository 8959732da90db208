"""Sweep tracking: a child MLflow run per trial under the sweep's parent run, the parent's summary
(search space, table of trials, parallel-coordinates plot, best trial), and the sweep's note on the
registered version.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from prefect import task

from schemas.config import DEFAULT_RETRIES, FinetuneConfig, TrackingConfig, flatten
from schemas.errors import is_transient
from schemas.results import LogSweepResult, RegisterResult, RunSteps
from schemas.secrets import mask_text, mask_uri
from tasks.log_run import log_run
from tasks.runtime.logs import timed
from tasks.runtime.tracking import tracking_client

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nested-run tag: the UI folds children under their parent


def trial_params(cfg: FinetuneConfig) -> list[Param]:
    """A trial's resolved config as params, without the sweep section (the parent holds it)."""
    return [Param(k, mask_text(str(v))[:6000]) for k, v in flatten(cfg).items() if not k.startswith("sweep.")]


@task(name="log_trial", **DEFAULT_RETRIES, retry_condition_fn=is_transient)
def log_trial(parent_run_id: str, trial: dict, cfg: FinetuneConfig, shared: dict, intermediate: dict, tracking: TrackingConfig) -> str:
    """Log one finished trial as a child run of the sweep's parent run; returns the child run's id.

    Args:
        parent_run_id: the sweep's MLflow run.
        trial: the trial task's result (state, steps, times) with `params`, the trial's values, and `metric`.
        cfg: the trial's config.
        shared: the steps computed once for the sweep (ingest, clean, split, report, baseline).
        intermediate: the validation metric reported after each epoch (what pruning judged).
        tracking: where MLflow lives.
    """
    uri = tracking.resolved_uri()
    client = tracking_client(uri)
    parent = client.get_run(parent_run_id)
    tags = {
        PARENT_TAG: parent_run_id,
        "mlflow.runName": f"trial-{trial['number']}",
        "trial_number": str(trial["number"]),
        "trial_state": trial["state"],
        "sweep_study": parent.data.tags.get("sweep_study", ""),
        "trial_params": json.dumps(trial["params"])[:5000],
    }
    run = client.create_run(parent.info.experiment_id, start_time=int(trial.get("started", time.time()) * 1000), tags=tags)
    child = run.info.run_id
    params = trial_params(cfg)
    for start in range(0, len(params), 100):
        client.log_batch(child, params=params[start : start + 100])
    curve = f"val_{trial['metric']}_per_epoch"
    per_epoch = [Metric(curve, float(v), 0, int(step)) for step, v in sorted(intermediate.items(), key=lambda kv: int(kv[0]))]
    client.log_batch(child, metrics=[*per_epoch, Metric("trial_number", float(trial["number"]), 0, 0)])
    if trial["state"] == "completed":
        log_run.fn(child, tracking, RunSteps(**shared, tokenize=trial["tokens"], fine_tune=trial["fine_tune"], evaluate=trial["evaluate"]))
    elif trial["state"] == "failed":
        client.set_tag(child, "failure", mask_text(str(trial.get("error", "")))[:5000])
    else:
        client.set_tag(child, "pruned_because", str(trial.get("reason", ""))[:5000])
    client.set_terminated(
        child, status="FAILED" if trial["state"] == "failed" else "FINISHED", end_time=int(trial.get("ended", time.time()) * 1000)
    )
    return child


def parallel_coordinates(rows: list[dict], keys: list[str], metric: str, path: Path) -> None:
    """One line per completed trial across its parameters and the metric, coloured by the metric."""
    import matplotlib

    matplotlib.use("Agg")
    import math

    import matplotlib.pyplot as plt

    done = [r for r in rows if r["state"] == "completed" and r["value"] is not None]
    axes = keys + [metric]
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(axes)), 4.5))
    positions = {}
    for key in axes:
        values = [r["params"].get(key) if key != metric else r["value"] for r in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and values:
            numbers = [math.log10(v) if key.endswith("learning_rate") and v > 0 else float(v) for v in values]
            low, high = min(numbers), max(numbers)
            positions[key] = [(n - low) / (high - low) if high > low else 0.5 for n in numbers]
        else:
            choices = sorted({json.dumps(v) for v in values})
            positions[key] = [(choices.index(json.dumps(v)) + 0.5) / len(choices) for v in values]
    values = [r["value"] for r in done]
    low, high = (min(values), max(values)) if values else (0, 1)
    cmap = plt.get_cmap("viridis")
    for i, row in enumerate(done):
        colour = cmap((row["value"] - low) / (high - low) if high > low else 0.5)
        ax.plot(range(len(axes)), [positions[k][i] for k in axes], color=colour, alpha=0.8, marker="o")
        ax.annotate(f"#{row['number']}", (len(axes) - 1, positions[metric][i]), fontsize=7, xytext=(4, 0), textcoords="offset points")
    ax.set_xticks(range(len(axes)), [k.split(".")[-1] for k in axes[:-1]] + [f"val {metric}"])
    ax.set_yticks([])
    ax.set_title(f"{len(done)} completed trials (log scale for learning rates; colour = validation {metric})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def trials_table(rows: list[dict], keys: list[str], metric: str) -> str:
    """The trials as CSV: number, state, each searched value, the validation metric, the child run."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trial", "state", *keys, f"val_{metric}", "run_id"])
    for r in sorted(rows, key=lambda r: r["number"]):
        writer.writerow([r["number"], r["state"], *[r["params"].get(k) for k in keys], r["value"], r.get("run_id", "")])
    return out.getvalue()


@task(name="log_sweep", **DEFAULT_RETRIES, retry_condition_fn=is_transient)
@timed
def log_sweep(
    parent_run_id: str, rows: list[dict], best: dict | None, space: dict, metric: str, counts: dict, study: dict, tracking: TrackingConfig
) -> LogSweepResult:
    """Log the sweep on its parent run: the search space, the trials table, the parallel-coordinates plot, the best trial.

    Args:
        parent_run_id: the sweep's MLflow run.
        rows: one dict per trial (number, state, params, value, run_id).
        best: the best completed trial's row (None when none completed).
        space: the search space as given.
        metric: the compare-on metric (validation).
        counts: completed, pruned and failed trials.
        study: the Optuna study's name and storage.
        tracking: where MLflow lives.
    """
    uri = tracking.resolved_uri()
    client = tracking_client(uri)
    keys = list(space)
    client.log_batch(
        parent_run_id,
        metrics=[Metric(f"trials_{k}", float(v), 0, 0) for k, v in counts.items()]
        + ([Metric(f"best_val_{metric}", float(best["value"]), 0, 0)] if best else []),
        tags=[
            RunTag("sweep", "true"),
            RunTag("sweep_metric", metric),
            RunTag("sweep_study", study["name"]),
            RunTag("sweep_storage", mask_uri(study["storage"])),
            RunTag("best_trial_number", str(best["number"]) if best else ""),
            RunTag("best_run_id", best.get("run_id", "") if best else ""),
            RunTag("best_params", json.dumps(best["params"])[:5000] if best else ""),
        ],
    )
    client.log_dict(parent_run_id, space, "sweep/space.json")
    client.log_text(parent_run_id, trials_table(rows, keys, metric), "sweep/trials.csv")
    client.log_dict(parent_run_id, {"best": best, "trials": sorted(rows, key=lambda r: r["number"])}, "sweep/trials.json")
    with tempfile.TemporaryDirectory(prefix="ff-sweep-") as tmp:
        plot = Path(tmp) / "parallel_coordinates.png"
        parallel_coordinates(rows, keys, metric, plot)
        client.log_artifact(parent_run_id, str(plot), "sweep")
    return LogSweepResult(trials_logged=len(rows))


@task(name="note_sweep", **DEFAULT_RETRIES, retry_condition_fn=is_transient)
def note_sweep(registered: RegisterResult, parent_run_id: str, best: dict, metric: str, tracking: TrackingConfig) -> dict:
    """Say on the registered version (card and tags) that it is a sweep's best trial, with a link to the sweep's run."""
    uri = tracking.resolved_uri()
    client = tracking_client(uri)
    name, version = registered.model_name, str(registered.model_version)
    parent = client.get_run(parent_run_id)
    link = f"#/experiments/{parent.info.experiment_id}/runs/{parent_run_id}"
    tags = {
        "sweep_parent_run_id": parent_run_id,
        "sweep_parent_run_link": link,
        "sweep_trial_number": str(best["number"]),
        "sweep_best_params": json.dumps(best["params"])[:5000],
        "sweep_study": parent.data.tags.get("sweep_study", ""),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    card = client.get_model_version(name, version).description or ""
    if "## Sweep" not in card:
        params = "\n".join(f"- `{k}` = `{v}`" for k, v in best["params"].items())
        card += (
            f"\n\n## Sweep\nThe best of a hyperparameter sweep (trial {best['number']}, validation {metric} {best['value']:.4f}); "
            f"the sweep's parent run is [{parent_run_id}]({link}), its trials are the parent's child runs.\n{params}\n"
        )
        client.update_model_version(name, version, description=card)
    return tags
