"""finetune-flow evaluate: score registered versions on a new labelled file, as a team checks its champion on this
month's data.

    python flows/evaluate.py [--config FILE.yaml] [--name NAME] [--version V | --alias A] [--compare-with V|@ALIAS]
                             [--summary-json PATH] [--tracking-uri URI] [key=value ...]

The file is read with the same data options as training (`task`, `data.*`: the config file of the run, or key=value
overrides) and goes through ingest and cleaning with row accounting (rows in = kept + quarantined, each with its
reason; no split). Rows whose label the version does not know are quarantined as label_not_in_labels. Each version
is scored with its own output rule and its task type's metrics and plots, and each score is logged as an MLflow run
(metrics eval_<name>, tagged with the model name and version, linked to the version's logged model) so versions
compare in the UI. With --compare-with, both versions score the same rows and the differences are printed.
"""

from __future__ import annotations

import sys

if __package__ in (None, ""):
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))
    from tasks.runtime import env as _env

    _env.apply()

import argparse
import json
from pathlib import Path

from prefect import flow, task

from flows.cli import add_tracking_argument, tracking_uri
from flows.temporary_server import temporary_api
from schemas.config import DEFAULT_RETRIES, check_model_name, load_config
from schemas.errors import ConfigError, FinetuneError, environment_fault, is_transient
from schemas.predict import EvaluateConfig
from schemas.results import CleanResult, ScoreResult
from schemas.secrets import mask_text
from tasks.clean import clean_data
from tasks.ingest import ingest_data
from tasks.runtime.logs import quiet_user_errors
from tasks.runtime.preflight import check_writable_file
from tasks.score import score_version

PIPELINE = "evaluate"


@task(name="resolve_versions", **DEFAULT_RETRIES, retry_condition_fn=is_transient)
def resolve_versions(cfg: EvaluateConfig) -> list[dict]:
    """Each version asked for: {uri, version, key, labels, model_id}; one of another task type is refused with one line."""
    from mlflow.exceptions import MlflowException

    from tasks.runtime.tracking import tracking_client

    client = tracking_client(cfg.run.tracking.resolved_uri())
    found = []
    for asked in cfg.versions:
        try:
            version = (
                client.get_model_version_by_alias(cfg.name, asked.lstrip("@"))
                if asked.startswith("@")
                else client.get_model_version(cfg.name, asked)
            )
        except MlflowException as err:  # an unknown name, version or alias (a store that is down is retried)
            if is_transient(err):
                raise
            raise ConfigError(f"model '{cfg.name}' has no version {asked}: python -m flows.registry list shows them") from None
        theirs = version.tags.get("task", "")
        if theirs and theirs != cfg.run.task:
            raise ConfigError(
                f"{cfg.name} v{version.version} is a {theirs} model and the data is read for task={cfg.run.task}: set task={theirs}"
            )
        found.append(
            {
                "uri": f"models:/{cfg.name}/{version.version}",
                "version": int(version.version),
                "key": version.tags.get("train_key", ""),
                "labels": json.loads(version.tags.get("labels", "[]") or "[]"),
                "model_id": getattr(version, "model_id", None),
            }
        )
    return found


def known_labels(versions: list[dict]) -> list[str] | None:
    """The labels every version knows (the first version's order); None where the versions have no label set."""
    if not all(v["labels"] for v in versions):
        return None
    shared = set.intersection(*(set(v["labels"]) for v in versions))
    return [label for label in versions[0]["labels"] if label in shared]


@task(name="log_scores", **DEFAULT_RETRIES, retry_condition_fn=is_transient)
def log_scores(cfg: EvaluateConfig, versions: list[dict], clean: CleanResult, scores: list[ScoreResult]) -> list[str]:
    """One MLflow run per scored version: eval_<metric> metrics (linked to its logged model), rows, tags and plots."""
    import socket

    from mlflow.entities import Metric, RunTag

    from task_types.base import scalar_metrics
    from tasks.runtime.tracking import PIPELINE_TAG, tracking_client

    client = tracking_client(cfg.run.tracking.resolved_uri())
    experiment = client.get_experiment_by_name(cfg.run.tracking.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(cfg.run.tracking.experiment)
    runs = []
    for version, score in zip(versions, scores):
        tags = {
            PIPELINE_TAG: PIPELINE,
            "model_name": cfg.name,
            "model_version": str(version["version"]),
            "model_uri": version["uri"],
            "task": cfg.run.task,
            "data_source": mask_text(str(cfg.run.data.path)),
            "data_fingerprint": clean.key,
            "host": socket.gethostname(),
            "mlflow.runName": f"evaluate {cfg.name} v{version['version']}",
        }
        run = client.create_run(experiment_id, tags=tags)
        figures = {f"eval_{name}": value for name, value in scalar_metrics(score.metrics).items()}
        figures.update({"rows_in": clean.rows_in, "rows_kept": clean.rows_kept, "rows_quarantined": clean.rows_quarantined})
        metrics = [Metric(name, float(value), 0, 0, model_id=version["model_id"]) for name, value in figures.items()]
        client.log_batch(run.info.run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items() if not k.startswith("mlflow.")])
        for artifact in sorted(Path(score.artifacts).glob("*")):
            if artifact.name != "manifest.json":
                client.log_artifact(run.info.run_id, str(artifact), "evaluation")
        client.log_artifact(run.info.run_id, clean.quarantine, "data")
        client.set_terminated(run.info.run_id, status="FINISHED")
        runs.append(run.info.run_id)
    return runs


@flow(name="evaluate")
def evaluate_versions(cfg: EvaluateConfig) -> dict:
    """Resolve the versions -> ingest -> clean (labels the versions know) -> score each version -> log each score."""
    io = cfg.run.runtime.retry_options()
    versions = resolve_versions.with_options(**io)(cfg)
    data = cfg.run.data.model_copy(update={"labels": known_labels(versions) or cfg.run.data.labels})
    raw = ingest_data.with_options(**io)(cfg.run.data, cfg.run.cache, cfg.run.task)
    clean = clean_data(raw, data, cfg.run.cache, cfg.run.task, for_training=False)
    scores = [score_version(v["uri"], v["key"], clean, cfg.run.task, cfg.run.cache, cfg.trust_remote_code) for v in versions]
    runs = log_scores.with_options(**io)(cfg, versions, clean, scores)
    return summarize(cfg, versions, clean, scores, runs)


def summarize(cfg: EvaluateConfig, versions: list[dict], clean: CleanResult, scores: list[ScoreResult], runs: list[str]) -> dict:
    """The --summary-json contract: rows, and per version its metrics and run; with two versions the differences."""
    from task_types.base import scalar_metrics

    scored = [
        {"model_uri": v["uri"], "version": v["version"], "run_id": run, "rows_scored": score.rows, "metrics": scalar_metrics(score.metrics)}
        for v, score, run in zip(versions, scores, runs)
    ]
    summary = {
        "task": cfg.run.task,
        "model_name": cfg.name,
        "rows_in": clean.rows_in,
        "rows_kept": clean.rows_kept,
        "rows_quarantined": clean.rows_quarantined,
        "quarantine_reasons": clean.quarantine_reasons,
        "quarantine_file": clean.quarantine if clean.rows_quarantined else None,
        "versions": scored,
    }
    if len(scored) == 2:
        first, second = scored[0]["metrics"], scored[1]["metrics"]
        summary["difference"] = {name: second[name] - first[name] for name in first if name in second}
    return summary


def format_summary(summary: dict) -> str:
    from task_types import get_task_type

    headline = get_task_type(summary["task"]).headline
    lines = [
        "",
        f"=== evaluate {summary['model_name']} on new rows ===",
        f"rows         {summary['rows_in']} in = {summary['rows_kept']} scored + {summary['rows_quarantined']} quarantined",
    ]
    if summary["quarantine_reasons"]:
        lines.append("quarantined  " + ", ".join(f"{n} {reason}" for reason, n in sorted(summary["quarantine_reasons"].items())))
    for item in summary["versions"]:
        figures = "   ".join(f"{m} {item['metrics'][m]:.4f}" for m in headline if m in item["metrics"])
        lines.append(f"v{item['version']:<11} {figures}   (mlflow run {item['run_id']})")
    if "difference" in summary:
        second, first = summary["versions"][1]["version"], summary["versions"][0]["version"]
        lines.append(
            f"v{second} - v{first}    " + "   ".join(f"{m} {summary['difference'][m]:+.4f}" for m in headline if m in summary["difference"])
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from schemas.config import RegistryConfig

    registry = RegistryConfig()
    parser = argparse.ArgumentParser(
        prog="python flows/evaluate.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="data options as for training, e.g. data.path=march.csv task=multi_label"
    )
    parser.add_argument("--config", metavar="FILE.yaml", help="the training config (its task and data sections are used)")
    parser.add_argument("--name", default=registry.model_name, help=f"registered model name (default: {registry.model_name})")
    parser.add_argument("--version", help="a version number to score (default: the alias)")
    parser.add_argument(
        "--alias", default=registry.alias, help=f"alias of the version to score when --version is not given (default: {registry.alias})"
    )
    parser.add_argument("--compare-with", metavar="V|@ALIAS", help="a second version (number or @alias) scored on the same rows")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a model whose files carry their own code to run it")
    parser.add_argument("--summary-json", metavar="PATH", help="also write the summary as one JSON object to PATH")
    add_tracking_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from flows.finetune import _one_line

    args = build_parser().parse_intermixed_args(argv)
    quiet_user_errors()
    try:
        check_model_name(args.name)
        run = load_config(args.config, args.overrides)
        run.tracking.uri = tracking_uri(args.tracking_uri) if args.tracking_uri else run.tracking.uri
        versions = [args.version or f"@{args.alias}", *([args.compare_with] if args.compare_with else [])]
        cfg = EvaluateConfig(run=run, name=args.name, versions=versions, trust_remote_code=args.trust_remote_code)
        if args.summary_json:
            check_writable_file(args.summary_json, "--summary-json")
        with temporary_api():
            summary = evaluate_versions(cfg)
    except (FinetuneError, ValidationError) as err:
        print(f"error: {mask_text(_one_line(err))}", file=sys.stderr)
        return 2
    except Exception as err:
        if environment_fault(err) is None:
            raise
        print(f"error: {mask_text(environment_fault(err))}: a disk is full or read-only; free space and run again", file=sys.stderr)
        return 1
    print(format_summary(summary))
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
