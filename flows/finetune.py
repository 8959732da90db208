"""finetune-flow: fine-tune a pretrained encoder on labelled text and register it behind a gate.

python flows/finetune.py [--config FILE.yaml] [--summary-json PATH] [key=value ...]
"""

from __future__ import annotations

import sys

if __package__ in (None, ""):
    # Run as a script: the variables must be set before prefect, transformers or mlflow are imported.
    from tasks.runtime import env as _env

    _env.apply()
    if __name__ == "__main__":
        from flows.temporary_server import start_early, stop_early

        # A run starts Prefect's temporary server first thing, so that its start-up (seconds of imports in its own
        # process) runs beside this process's: the config check, prefect, mlflow and the steps. --help and --serve
        # never start it; --help (and a usage error) answer from the config's schema before prefect and mlflow load,
        # and a config that does not validate stops it again (main() then reports the problem as one line).
        if not {"-h", "--help", "--serve"} & set(sys.argv[1:]):
            start_early()
        from flows.cli import finetune_parser, runs_once_with_a_valid_config

        if not runs_once_with_a_valid_config(finetune_parser().parse_intermixed_args()):
            stop_early()

import json
import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from flows.cli import finetune_parser
from flows.temporary_server import temporary_api
from schemas.config import FinetuneConfig, load_config
from schemas.errors import ConfigError, FinetuneError, environment_fault
from schemas.results import DataSteps, LogRunResult, RegisterResult, RunSteps
from schemas.secrets import externalize_credentials, mask_text, mask_uri
from tasks.baseline import fit_baseline
from tasks.clean import clean_data
from tasks.ingest import ingest_data
from tasks.log_run import log_run
from tasks.register import register_model
from tasks.report import report_data
from tasks.runtime.logs import quiet_user_errors
from tasks.runtime.preflight import check_tracking_store, check_writable_file
from tasks.runtime.tracking import tracking_run
from tasks.split import split_data


def prepare_data(cfg: FinetuneConfig, io: dict) -> DataSteps:
    """The data steps every run and every sweep shares (called inside a flow): ingest -> clean -> split -> tokenize
    -> report -> baseline."""
    raw = ingest_data.with_options(**io)(cfg.data, cfg.cache, cfg.task)
    clean = clean_data(raw, cfg.data, cfg.cache, cfg.task, model=cfg.model)
    split = split_data(clean, cfg.data, cfg.cache, cfg.seed, cfg.task)
    # Tokenizing imports transformers (seconds): a run that stops on its data never pays for it.
    from tasks.tokenize import tokenize_data

    tokens = tokenize_data(split, cfg.model, cfg.train, cfg.cache, cfg.task)
    report = report_data(raw, clean, split, tokens, cfg.cache, cfg.task)
    baseline = fit_baseline(split, cfg.cache, cfg.task)
    return DataSteps(ingest=raw, clean=clean, split=split, tokenize=tokens, report=report, baseline=baseline)


@flow(name="finetune")
def finetune(cfg: FinetuneConfig) -> dict:
    """Ingest -> clean -> split -> tokenize -> report -> baseline -> fine-tune -> evaluate -> log -> register and gate."""
    # The model steps import torch and transformers (several seconds): a run that stops on its data never pays for them.
    from tasks.evaluate import evaluate_model
    from tasks.train import fine_tune

    started = time.perf_counter()
    io = cfg.runtime.retry_options()
    with tracking_run(cfg, flow_run.get_id()) as run_id:
        data = prepare_data(cfg, io)
        trained = fine_tune(
            data.tokenize, cfg.model, cfg.train, cfg.cache, cfg.seed, cfg.task, cfg.registry.compare_on, ray_address=cfg.sweep.ray_address
        )
        evaluation = evaluate_model(trained, data.tokenize, cfg.eval, cfg.train, cfg.cache, cfg.explain)
        steps = RunSteps(**data.by_name(), fine_tune=trained, evaluate=evaluation)
        logged = log_run.with_options(**io)(run_id, cfg.tracking, steps)
        registered = register_model.with_options(**io)(run_id, trained, evaluation, data.split, cfg.registry, cfg.tracking, data.baseline)
    return summarize(run_id, cfg.task, steps, logged, registered, time.perf_counter() - started)


def summarize(run_id: str, task: str, steps: RunSteps, logged: LogRunResult, registered: RegisterResult, wall_seconds: float) -> dict:
    """The run's one-object summary (the --summary-json contract)."""
    from task_types import get_task_type
    from task_types.base import scalar_metrics

    clean, baseline_metrics = steps.clean, steps.baseline.metrics
    val, test = (scalar_metrics(steps.evaluate.metrics.get(split, {})) for split in ("validation", "test"))
    cached = steps.by_name()
    legacy_f1 = get_task_type(task).summary_f1  # val_f1/test_f1 predate task types: set where the type names its F1
    return {
        "run_id": run_id,
        "task": task,
        **registered.outcome(),
        "val_metrics": val,
        "test_metrics": test or None,
        "baseline_val_metrics": baseline_metrics["validation"],
        "baseline_test_metrics": baseline_metrics["test"],
        "baseline_verdict": baseline_verdict(task, val, baseline_metrics["validation"], steps.split.target),
        "next_steps": next_steps(task, val, baseline_metrics["validation"], steps.split.target, steps.fine_tune),
        "val_accuracy": val.get("accuracy"),
        "val_f1": val.get(legacy_f1) if legacy_f1 else None,
        "test_accuracy": test.get("accuracy"),
        "test_f1": test.get(legacy_f1) if legacy_f1 else None,
        "rows_in": clean.rows_in,
        "rows_kept": clean.rows_kept,
        "rows_quarantined": clean.rows_quarantined,
        "quarantine_file": clean.quarantine if clean.rows_quarantined else None,
        "rows_not_data": steps.ingest.rows_not_data,
        "quarantine_reasons": clean.quarantine_reasons,
        "texts_truncated": steps.report.texts_truncated,
        "data_report": str(Path(steps.report.path) / "data_report.md"),
        "reused_steps": [name for name, result in cached.items() if result.reused],
        "resumed_from": steps.fine_tune.resumed_from,
        "learning_rate": steps.fine_tune.learning_rate,
        "learning_rate_why": steps.fine_tune.learning_rate_why,
        "lr_range_seconds": steps.fine_tune.lr_range_seconds,
        "step_seconds": {
            **{name: result.seconds for name, result in cached.items()},
            "log_run": logged.seconds,
            "register": registered.seconds,
        },
        "wall_seconds": round(wall_seconds, 2),
    }


def baseline_verdict(task: str, val: dict, baseline: dict, target: dict | None = None) -> str:
    """'beats the TF-IDF baseline by +0.041 f1_macro' or 'does NOT beat ...', on the task's compare-on metric."""
    from task_types import get_task_type
    from tasks.registry.gate import beats

    task_type = get_task_type(task).for_target(target or {})
    metric, name = task_type.compare_on, task_type.baseline_name
    if metric not in val or metric not in baseline:
        return f"no {metric} to compare with the {name}"
    gain = beats(metric, val[metric], baseline[metric])
    return (
        f"{'beats' if gain > 0 else 'does NOT beat'} the {name} by {gain:+.4f} {metric} on validation "
        f"({val[metric]:.4f} vs {baseline[metric]:.4f})"
    )


def next_steps(task: str, val: dict, baseline: dict, target: dict, trained) -> list[str]:
    """What to try, with the command, when the model does not beat its run's baseline (else nothing)."""
    from task_types import get_task_type
    from tasks.registry.gate import beats

    metric = get_task_type(task).for_target(target or {}).compare_on
    if metric not in val or metric not in baseline or beats(metric, val[metric], baseline[metric]) > 0:
        return []
    epochs = int(trained.epochs_run or 1)
    return [
        f"more epochs: train.epochs={2 * epochs} (it ran {epochs}; early stopping still picks the best)",
        "the rate and the layers searched: python flows/sweep.py --trials 8 (the same data options; see README, Sweeps)",
        "a larger model: model.name_or_path=<a BERT-base or larger encoder folder or hub name>",
    ]


def format_summary(summary: dict, tracking_uri: str) -> str:
    """The summary as a user reads it at the end of a run."""
    from task_types import get_task_type

    decision = f"promoted to @{summary['alias']}" if summary["promoted"] else "NOT promoted"
    headline = get_task_type(summary["task"]).headline  # the run's own type: for_target needs the target spec, not in the summary

    def figures(metrics: dict) -> str:
        return "   ".join(f"{name} {metrics[name]:.4f}" for name in headline if name in metrics)

    lines = [
        "",
        "=== finetune-flow summary ===",
        f"model        {summary['model_name']} v{summary['model_version']} ({decision}; task {summary['task']})",
        *[f"  - {reason}" for reason in summary["reasons"]],
        f"validation   {figures(summary['val_metrics'])}",
    ]
    if summary["test_metrics"]:
        lines.append(f"test         {figures(summary['test_metrics'])}")
    lines.append(f"baseline     test {figures(summary['baseline_test_metrics'])}")
    lines.append(f"             the model {summary['baseline_verdict']}")
    lines += [f"  try        {step}" for step in summary.get("next_steps") or []]
    lines.append(f"rows         {summary['rows_in']} in = {summary['rows_kept']} kept + {summary['rows_quarantined']} quarantined")
    if summary["reused_steps"]:
        lines.append(f"cached       re-used {', '.join(summary['reused_steps'])}")
    if summary["quarantine_reasons"]:
        lines.append("quarantined  " + ", ".join(f"{n} {reason}" for reason, n in sorted(summary["quarantine_reasons"].items())))
    if summary["quarantine_file"]:
        lines.append(f"quarantine   {summary['quarantine_file']}")
    if summary["texts_truncated"]:
        lines.append(f"truncated    {summary['texts_truncated']} texts longer than train.max_length (kept, cut)")
    lines.append(f"data report  {summary['data_report']}")
    lines += [
        f"mlflow run   {summary['run_id']}",
        f"wall time    {summary['wall_seconds']:.1f} s",
        f"open the UI  mlflow ui --backend-store-uri {mask_uri(tracking_uri)} --workers 1",
    ]
    return "\n".join(lines)


def serve(cfg: FinetuneConfig) -> None:
    """Run the flow on its cron schedule in this process (Prefect `flow.serve`)."""
    from prefect.schedules import Cron

    finetune.serve(
        name="finetune-serve",
        schedule=Cron(cfg.schedule.cron, timezone=cfg.schedule.timezone),
        parameters={"cfg": cfg.model_dump(mode="json", exclude_defaults=True)},
    )


def config_problems(err) -> list[str]:
    """One readable problem per option: pydantic reports a union (train.epochs: a number or 'auto') once per member,
    under locations like train.epochs.constrained-float; those become one line, their messages joined by 'or'."""
    grouped: dict[str, list[str]] = {}
    for e in err.errors():
        parts = [str(p) for p in e["loc"] if not _is_union_member(str(p))]
        msg = e["msg"].removeprefix("Value error, ")
        grouped.setdefault(".".join(parts), []).append(msg)
    return [(f"{loc}: " if loc else "") + " or ".join(dict.fromkeys(msgs)) for loc, msgs in grouped.items()]


def _is_union_member(part: str) -> bool:
    return part.startswith(("literal[", "constrained-", "function-")) or part in ("float", "int", "str", "bool", "dict[str,float]")


def _one_line(err: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(err, ValidationError):
        return "invalid config: " + "; ".join(config_problems(err)) + " (see --help for the options)"
    return str(err)


def main(argv: list[str] | None = None) -> int:
    args = finetune_parser().parse_intermixed_args(argv)
    from pydantic import ValidationError

    quiet_user_errors()
    try:
        cfg = load_config(args.config, args.overrides + (["cache.refresh=true"] if args.refresh else []))
        # From here on the config holds no secret: Prefect stores it as the run's parameters.
        cfg.tracking.uri = externalize_credentials(cfg.tracking.uri)
        check_tracking_store(cfg.tracking.resolved_uri())
        check_base_model(cfg.model.name_or_path)
        check_ray(cfg.train.runner)
        if args.summary_json:
            check_writable_file(args.summary_json, "--summary-json")
        if args.serve:
            serve(cfg)
            return 0
        with temporary_api():  # without PREFECT_API_URL: a temporary server that dies with this process
            summary = finetune(cfg)
    except (FinetuneError, ValidationError) as err:
        print(f"error: {mask_text(_one_line(err))}", file=sys.stderr)
        return 2
    except Exception as err:
        if environment_fault(err) is None:
            raise
        print(
            f"error: {mask_text(environment_fault(err))}: a disk is full or read-only (the tracking store, its artifacts or "
            "cache.dir); free space or point tracking.uri / cache.dir elsewhere, then run again",
            file=sys.stderr,
        )
        return 1
    print(format_summary(summary, cfg.tracking.resolved_uri()))
    return write_summary(args.summary_json, summary)


def check_ray(runner: str) -> None:
    """train.runner=ray without Ray installed is one line naming the set-up, before any step."""
    if runner == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            from tasks.training.ray_train import RAY_INSTALL

            raise ConfigError(f"train.runner=ray needs Ray, which is not installed: {RAY_INSTALL}") from None


def check_base_model(name_or_path: str) -> None:
    """A local base model that keeps its weights only as a pickle is refused before any step (one line, never a trace)."""
    from schemas.config import resolve_model_path
    from tasks.serving.safe_load import refuse_pickles

    refuse_pickles(Path(resolve_model_path(name_or_path)), name_or_path, "model.name_or_path")


def write_summary(path: str | None, summary: dict) -> int:
    """--summary-json, written after the run: a disk that fills up by then is one error line (exit 1) that says what the
    run already registered, never a traceback."""
    if not path:
        return 0
    target = Path(path)
    try:  # written in place, not renamed over: the path may be a pipe or a device (/dev/stdout)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(summary, indent=1))
    except OSError as err:
        done = (
            f"{summary['model_name']} v{summary['model_version']} was registered"
            + (f" and is @{summary['alias']}" if summary.get("promoted") else " (not promoted)")
            if summary.get("model_version")
            else "nothing was registered"
        )
        print(f"error: cannot write --summary-json {path}: {err.strerror or err}; the run itself finished: {done}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
