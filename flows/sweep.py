"""finetune-flow sweep: search hyperparameters with Optuna, K trials at a time, and register the best behind the gate.

python flows/sweep.py [--config FILE] [--trials N] [--parallel K] [--runner local|ray] [--ray-address ADDR]
                      [--sampler tpe|random|grid] [--summary-json PATH] [key=value ...]
"""

from __future__ import annotations

import sys

if __package__ in (None, ""):
    # Run as a script: the variables must be set before prefect, transformers or mlflow are imported.
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))
    from tasks.runtime import env as _env

    _env.apply()

import argparse
import json
import time

from prefect import flow
from prefect.runtime import flow_run

from flows.finetune import prepare_data, write_summary
from flows.sweep_runners import check_runner, task_runner
from flows.sweep_study import check_space, check_storage
from flows.temporary_server import temporary_api
from schemas.config import FinetuneConfig, SweepConfig, describe_options, load_config
from schemas.errors import FinetuneError
from schemas.results import RegisterResult
from schemas.secrets import externalize_credentials, mask_text, mask_uri
from tasks.register import register_model
from tasks.runtime.logs import quiet_user_errors, step_logger
from tasks.runtime.preflight import check_tracking_store, check_writable_file
from tasks.runtime.tracking import tracking_run


@flow(name="sweep")
def sweep(cfg: FinetuneConfig) -> dict:
    """Shared steps once -> K trials at a time (tokenize re-used, fine-tune + evaluate each) -> log the sweep -> register the best."""
    from flows.sweep_study import open_study
    from flows.sweep_tracking import log_sweep, note_sweep
    from task_types import best_epoch_metric
    from tasks.evaluate import evaluate_model
    from tasks.tokenize import tokenize_data
    from tasks.train import fine_tune

    started, started_at = time.perf_counter(), time.time()
    io = cfg.runtime.retry_options()
    with tracking_run(cfg, flow_run.get_id()) as parent_id:
        warming = warm_workers(cfg.sweep)
        data = prepare_data(cfg, io)
        for future in warming:
            future.wait()
        tokens, split, baseline = data.tokenize, data.split, data.baseline
        shared = {name: result for name, result in data.by_name().items() if name != "tokenize"}
        metric = best_epoch_metric(cfg.task, cfg.registry.compare_on, split.target)
        study = open_study(cfg, metric)
        trials = run_trials(study, cfg, parent_id, shared, metric)
        rows, best, counts = study_rows(study, cfg.sweep)
        logged = log_sweep.with_options(**io)(
            parent_id,
            rows,
            best,
            space_as_json(cfg.sweep),
            metric,
            counts,
            {"name": study.study_name, "storage": study_storage(study)},
            cfg.tracking,
        )
        if best is None:
            raise FinetuneError(f"no trial of the sweep completed ({counts}): nothing to register; see the child runs' failure tags")
        winner = best_config(cfg, best)
        best_tokens = tokenize_data(split, winner.model, winner.train, winner.cache, winner.task)
        trained = fine_tune(best_tokens, winner.model, winner.train, winner.cache, winner.seed, winner.task, winner.registry.compare_on)
        evaluation = evaluate_model(trained, best_tokens, winner.eval, winner.train, winner.cache, winner.explain)
        registered = register_model.with_options(**io)(best["run_id"], trained, evaluation, split, cfg.registry, cfg.tracking, baseline)
        noted = note_sweep.with_options(**io)(registered, parent_id, best, metric, cfg.tracking)
    return summarize(
        parent_id,
        best,
        counts,
        registered,
        {"tokenize": tokens, **shared, "log_sweep": logged, "note_sweep": noted},
        trials,
        study.study_name,
        time.perf_counter() - started,
        started_at,
    )


# ------------------------------------------------------------------------------------------------------------------ the trials


def run_trials(study, cfg: FinetuneConfig, parent_id: str, shared: dict, metric: str) -> list[dict]:
    """Keep K trials running on the flow's task runner: as each ends, log it as a child run, tell the study and
    start the next, so no worker waits for the slowest trial of a batch; until done."""
    from prefect.futures import as_completed

    from flows.sweep_runners import trial_cpus, trial_resources
    from flows.sweep_study import ask_new, count_trials, trial_config
    from flows.sweep_trials import run_trial

    logger, sweep_cfg, results = step_logger(), cfg.sweep, []
    threads, target = trial_cpus(sweep_cfg), grid_limit(sweep_cfg)
    running: dict = {}  # future -> (trial, params, trial config)

    def start_next() -> bool:
        asked = ask_new(study, sweep_cfg.space)
        if asked is None:
            logger.info("sweep: every setting of the search space has run; no new trial")
            return False
        trial, params = asked
        pruning = (
            {
                "study": study.study_name,
                "storage": study_storage(study),
                "trial_id": trial._trial_id,
                "metric": metric,
                "startup": sweep_cfg.prune_after_trials,
            }
            if sweep_cfg.pruning
            else None
        )
        trial_cfg = trial_config(cfg, params)
        logger.info("sweep: trial %d starts (%d running, target %d trials): %s", trial.number, len(running) + 1, target, json.dumps(params))
        with trial_resources(sweep_cfg):
            running[run_trial.submit(trial.number, trial_cfg, shared["split"], pruning, threads)] = (trial, params, trial_cfg)
        return True

    to_start = target - sum(count_trials(study.get_trials(deepcopy=False)).values())  # trials of an earlier, killed run count
    while to_start > 0 and len(running) < sweep_cfg.parallel:
        to_start = to_start - 1 if start_next() else 0
    while running:
        future = next(as_completed(list(running)))
        trial, params, trial_cfg = running.pop(future)
        # Told before the next is asked (logging takes well under a second): the sampler learns from every result.
        results.append(finish_trial(study, trial, params, trial_cfg, future, parent_id, shared, metric, cfg))
        if to_start > 0:
            to_start = to_start - 1 if start_next() else 0
    return results


def finish_trial(study, trial, params: dict, trial_cfg: FinetuneConfig, future, parent_id: str, shared: dict, metric: str, cfg) -> dict:
    """Log one ended trial as a child run and tell the study its value (a failed trial is recorded, not raised)."""
    import optuna

    from flows.sweep_tracking import log_trial

    try:
        result = future.result()
    except Exception as err:  # a failed trial is recorded (FAILED child run, FAIL in the study); the sweep goes on
        result = {"number": trial.number, "state": "failed", "error": f"{type(err).__name__}: {err}"}
    value = scalar(result, metric)
    if result["state"] == "completed" and value is None:
        result = {**result, "state": "failed", "error": f"the evaluation has no validation {metric} to compare trials on"}
    record = {**result, "params": params, "metric": metric}
    intermediate = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number).intermediate_values
    child = log_trial(parent_id, record, trial_cfg, shared, {str(k): v for k, v in intermediate.items()}, cfg.tracking)
    trial.set_user_attr("mlflow_run_id", child)
    state = {"completed": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}.get(
        result["state"], optuna.trial.TrialState.FAIL
    )
    study.tell(trial, value if result["state"] == "completed" else None, state=state)
    step_logger().info(
        "sweep: trial %d %s%s", trial.number, result["state"], f", validation {metric} {value:.4f}" if value is not None else ""
    )
    span = None
    if "ended" in result:  # fine-tune + evaluate end the trial; a pruned one ends in fine-tune (its start is the trial's)
        busy = sum(result[k].seconds or 0 for k in ("fine_tune", "evaluate") if k in result)
        span = (result["ended"] - busy if "fine_tune" in result else result["started"], result["ended"])
    return {
        "number": trial.number,
        "state": result["state"],
        "child_run_id": child,
        "tokenize_reused": result["tokens"].reused if "tokens" in result else None,
        "seconds": {k: result[k].seconds for k in ("tokens", "fine_tune", "evaluate") if k in result},
        "span": span,
    }


def warm_workers(sweep_cfg: SweepConfig) -> list:
    """One warm-up task per local worker process, submitted before the shared steps run (nothing for one trial at a
    time, which runs in this process, or for Ray, whose workers outlive a task)."""
    from flows.sweep_trials import warm_up

    if sweep_cfg.runner != "local" or sweep_cfg.parallel == 1:
        return []
    return [warm_up.submit() for _ in range(sweep_cfg.parallel)]


def grid_limit(sweep_cfg: SweepConfig) -> int:
    """sweep.trials, at most the number of grid points for the grid sampler (it would repeat them)."""
    import math

    from flows.sweep_study import grid_space

    if sweep_cfg.sampler != "grid":
        return sweep_cfg.trials
    return min(sweep_cfg.trials, math.prod(len(v) for v in grid_space(sweep_cfg.space).values()))


def scalar(result: dict, metric: str) -> float | None:
    if result["state"] != "completed":
        return None
    value = result["evaluate"].metrics["validation"].get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def study_storage(study) -> str:
    """The storage URL the study was opened with (open_study records it)."""
    return study.user_attrs["storage"]


def study_rows(study, sweep_cfg: SweepConfig) -> tuple[list[dict], dict | None, dict]:
    """(one row per trial, the best completed trial's row, counts) from the study, including trials of earlier runs."""
    from flows.sweep_study import count_trials, counted, state_name

    trials = [t for t in study.get_trials(deepcopy=False) if counted(t)]
    rows = [
        {
            "number": t.number,
            "state": state_name(t.state),
            "params": t.params,
            "value": t.value,
            "run_id": t.user_attrs.get("mlflow_run_id", ""),
        }
        for t in trials
    ]
    completed = [r for r in rows if r["state"] == "completed" and r["value"] is not None]
    best = None
    if completed:
        best_number = study.best_trial.number
        best = next(r for r in completed if r["number"] == best_number)
    return rows, best, count_trials(trials)


def best_config(cfg: FinetuneConfig, best: dict) -> FinetuneConfig:
    from flows.sweep_study import trial_config

    return trial_config(cfg, best["params"])


def space_as_json(sweep_cfg: SweepConfig) -> dict:
    return sweep_cfg.model_dump(mode="json")["space"]


def run_sweep(cfg: FinetuneConfig) -> dict:
    """The sweep flow on the task runner its config asks for."""
    return sweep.with_options(task_runner=task_runner(cfg.sweep))(cfg)


# ---------------------------------------------------------------------------------------------------------------- the summary


def summarize(
    parent_id: str,
    best: dict,
    counts: dict,
    registered: RegisterResult,
    steps: dict,
    trials: list[dict],
    study: str,
    wall_seconds: float,
    started_at: float,
) -> dict:
    """The sweep's one-object summary (the --summary-json contract)."""
    builds = [not steps["tokenize"].reused] + [t["tokenize_reused"] is False for t in trials]
    return {
        "parent_run_id": parent_id,
        "best_run_id": best["run_id"],
        "best_trial": best["number"],
        "best_params": best["params"],
        "best_value": best["value"],
        "trials": counts,
        **registered.outcome(),
        "study": study,
        "trials_run_now": [{k: t[k] for k in ("number", "state", "child_run_id", "tokenize_reused")} for t in trials],
        "tokenize_builds": sum(builds),
        "trial_step_seconds": [t["seconds"] for t in trials],
        # When each trial's fine-tune + evaluate ran, in seconds from the flow's start (None: it failed to start).
        "trial_spans": [[round(t["span"][0] - started_at, 2), round(t["span"][1] - started_at, 2)] if t["span"] else None for t in trials],
        "wall_seconds": round(wall_seconds, 2),
    }


def format_summary(summary: dict, tracking_uri: str) -> str:
    decision = f"promoted to @{summary['alias']}" if summary["promoted"] else "NOT promoted"
    counts = summary["trials"]
    lines = [
        "",
        "=== finetune-flow sweep ===",
        f"trials       {counts['completed']} completed, {counts['pruned']} pruned, {counts['failed']} failed (study {summary['study']})",
        f"best         trial {summary['best_trial']}: {json.dumps(summary['best_params'])} -> validation {summary['best_value']:.4f}",
        f"model        {summary['model_name']} v{summary['model_version']} ({decision})",
        *[f"  - {reason}" for reason in summary["reasons"]],
        f"mlflow       parent run {summary['parent_run_id']}, best trial's run {summary['best_run_id']}",
        f"wall time    {summary['wall_seconds']:.1f} s",
        f"open the UI  mlflow ui --backend-store-uri {mask_uri(tracking_uri)} --workers 1   (tick the child runs, Compare)",
    ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------------------- the CLI


def build_parser() -> argparse.ArgumentParser:
    options = "\n".join(f"  {key:<32} {desc} (default: {default})" for key, default, desc in describe_options() if key.startswith("sweep."))
    parser = argparse.ArgumentParser(
        prog="python flows/sweep.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"sweep options (key=value; every other option of flows/finetune.py --help works too):\n{options}\n\n"
        "examples:\n  python flows/sweep.py --trials 8 --parallel 2 data.max_rows=2000 train.epochs=2\n"
        "  python flows/sweep.py --config sweep.yaml --runner ray --ray-address ray://head:10001",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. sweep.space='{train.learning_rate: [1e-4, 3e-4]}'"
    )
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with config sections; the search space is its `sweep:` section")
    parser.add_argument("--trials", type=int, metavar="N", help="= sweep.trials")
    parser.add_argument("--parallel", type=int, metavar="K", help="= sweep.parallel")
    parser.add_argument("--runner", choices=["local", "ray"], help="= sweep.runner")
    parser.add_argument("--ray-address", metavar="ADDR", help="= sweep.ray_address")
    parser.add_argument("--sampler", choices=["tpe", "random", "grid"], help="= sweep.sampler")
    parser.add_argument("--summary-json", metavar="PATH", help="also write the sweep summary as one JSON object to PATH")
    return parser


def cli_overrides(args: argparse.Namespace) -> list[str]:
    """The shortcut flags as the key=value overrides they stand for (after the positional ones: the flag wins)."""
    flags = {
        "trials": "sweep.trials",
        "parallel": "sweep.parallel",
        "runner": "sweep.runner",
        "ray_address": "sweep.ray_address",
        "sampler": "sweep.sampler",
    }
    return list(args.overrides) + [f"{key}={getattr(args, name)}" for name, key in flags.items() if getattr(args, name) is not None]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from pydantic import ValidationError

    from flows.finetune import _one_line

    quiet_user_errors()
    try:
        cfg = load_config(args.config, cli_overrides(args))
        cfg.tracking.uri = externalize_credentials(cfg.tracking.uri)
        check_tracking_store(cfg.tracking.resolved_uri())
        if args.summary_json:
            check_writable_file(args.summary_json, "--summary-json")
        check_runner(cfg.sweep)
        check_space(cfg)
        check_storage(cfg)
        with temporary_api():  # before the runner is made: Ray workers are told this API
            summary = run_sweep(cfg)
    except (FinetuneError, ValidationError) as err:
        print(f"error: {mask_text(_one_line(err))}", file=sys.stderr)
        return 2
    print(format_summary(summary, cfg.tracking.resolved_uri()))
    return write_summary(args.summary_json, summary)


if __name__ == "__main__":
    sys.exit(main())
