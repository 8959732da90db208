"""What a registered version says about itself: its model card (markdown), its tags, and the gate-decision table."""

from __future__ import annotations

import json

from mlflow import MlflowClient

from schemas.config import TrackingConfig
from schemas.results import BaselineResult, EvaluationResult, SplitResult, TrainResult
from schemas.secrets import mask_uri
from task_types import get_task_type
from task_types.base import scalar_metrics
from tasks.runtime.metric_names import SPLIT_PREFIX
from tasks.runtime.tracking import git_revision


def model_card(facts: dict) -> str:
    """The version's model card (markdown): what it is, what it was trained on, how it scored, and its limits."""
    task_type = get_task_type(facts["task"]).for_target(facts.get("target") or {})
    headline = task_type.headline
    rows = [(split, m) for split, m in facts["metrics"].items()]
    rows += [(f"{split} ({task_type.baseline_name})", m) for split, m in (facts.get("baseline") or {}).items()]
    metrics = "\n".join(
        f"| {split} | " + " | ".join(f"{scalar_metrics(m).get(k, float('nan')):.4f}" for k in headline) + " |" for split, m in rows
    )
    sizes = ", ".join(f"{name} {n}" for name, n in facts["sizes"].items())
    reasons = "\n".join(f"- {r}" for r in facts["reasons"])
    limits = "\n".join(
        f"- {line}"
        for line in [
            "Only as good as its labels: it learns the training data's biases and label noise.",
            *task_type.card_input_limits(facts),
            "Texts unlike the training data (other domains, languages or slang) may get confident but wrong outputs; "
            "the validation figures above hold for data like the training data only.",
            *task_type.card_limits(),
        ]
    )
    return f"""# {facts["model_name"]} v{facts["version"]}

**Gate:** {"passed" if facts["gate_passed"] else "failed"}{" (promoted to @" + facts["alias"] + ")" if facts["promoted"] else ""}
{reasons}

## Model
- Base model: `{facts["base_model"]}`
- Task type: `{task_type.name}` ({task_type.title})
{task_type.card_section(facts["target"], facts["decision"])}
- Training: {facts["training"]}

## Data
- Source: `{facts["data_source"]}`{"".join(f"{chr(10)}- {note}" for note in task_type.card_data_notes(facts))}
- Data fingerprint: `{facts["data_fingerprint"]}`; config fingerprint: `{facts["config_fingerprint"]}`
- Rows: {sizes}
- Code: git `{facts["git_revision"]}`; MLflow run `{facts["run_id"]}`

## Metrics
| split | {" | ".join(headline)} |
|---|{"---|" * len(headline)}
{metrics}
{task_type.card_metrics(facts["metrics"])}
{baseline_section(facts, task_type)}{explanations_section(facts.get("explanations") or {})}
## Intended use
{task_type.title.capitalize()} of texts like those in the training data, with a person or a threshold on the
returned scores deciding what to do with uncertain cases.

## Known limits
{limits}
"""


def baseline_section(facts: dict, task_type) -> str:
    """When the model does not beat its run's baseline on the compare-on metric: say so, and what to try next."""
    from tasks.registry.gate import beats

    metric, baseline = task_type.compare_on, (facts.get("baseline") or {}).get("validation") or {}
    mine = scalar_metrics(facts["metrics"].get("validation", {}))
    if metric not in mine or metric not in baseline or beats(metric, mine[metric], baseline[metric]) > 0:
        return ""
    return (
        f"\n**It does not beat its run's {task_type.baseline_name}** on validation {metric} ({mine[metric]:.4f} vs {baseline[metric]:.4f}). "
        "Next to try: more epochs (train.epochs), a sweep over the rate and the frozen layers (python flows/sweep.py), a larger model "
        "(model.name_or_path).\n"
    )


def explanations_section(explanations: dict) -> str:
    """The card's part on why the model decides: faithfulness of the explanations and the words that weigh most."""
    if not explanations:
        return ""
    m = explanations["metrics"]
    lines = [
        "",
        "## Why it decides",
        f"Integrated gradients ({explanations['steps']} steps) on {explanations['rows']} validation rows, the most confident "
        "errors and correct rows: `evaluation/explanations.html` (words shaded) and `evaluation/explanations.json` in the run.",
    ]
    if "explain_comprehensiveness" in m:
        lines.append(
            f"- Faithfulness (ERASER): removing each row's top 20% words drops the prediction by {m['explain_comprehensiveness']:.4f} "
            f"(as many random words: {m['explain_random_comprehensiveness']:.4f}); keeping only them drops it by "
            f"{m['explain_sufficiency']:.4f}; completeness gap (explain_delta) {m['explain_delta']:.4f}"
        )
    for name, words in explanations.get("top_words", {}).items():
        lines.append(f"- Words that push towards `{name}` most: " + ", ".join(f"{w} ({s:+.3f})" for w, s in words[:6]))
    return "\n".join(lines) + "\n"


def metrics_markdown(name: str, version, promoted: bool, reasons: list[str], metrics: dict, alias: str, headline: tuple[str, ...]) -> str:
    """The run's metrics table and gate decision as a Prefect markdown artifact."""
    verdict = f"promoted to `@{alias}`" if promoted else "**not promoted**"
    header = "| split | " + " | ".join(headline) + " |\n|---|" + "---|" * len(headline)
    rows = "\n".join(f"| {split} | " + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in headline) + " |" for split, m in metrics.items())
    gates = "\n".join(f"| {reason} |" for reason in reasons)
    return f"# {name} v{version}: {verdict}\n\n## Metrics\n{header}\n{rows}\n\n## Gate decision\n| gate |\n|---|\n{gates}\n"


def version_facts(
    client: MlflowClient, run_id: str, trained: TrainResult, evaluation: EvaluationResult, split: SplitResult, tracking: TrackingConfig
) -> dict[str, str]:
    """Tags every version carries: task, inputs and outputs, metrics, fingerprints, code revision and where its run lives."""
    run = client.get_run(run_id)
    link = f"#/experiments/{run.info.experiment_id}/runs/{run_id}"
    task_type = get_task_type(trained.task)
    pair = run.data.params.get("data.text_pair_column", "None")
    tags = {
        "task": trained.task,
        "inputs": "text, text_pair" if pair not in ("None", "") else "text",
        "outputs": ", ".join(task_type.empty_columns(split.target))[:5000],
        "train_key": trained.key,
        "data_fingerprint": split.key,
        "config_fingerprint": run.data.tags.get("config_fingerprint", ""),
        "git_revision": run.data.tags.get("git_revision", git_revision()),
        "run_id": run_id,
        "run_link": link,
        "tracking_uri": mask_uri(tracking.resolved_uri()),
        "labels": json.dumps(trained.labels)[:5000],
        "base_model": run.data.params.get("model.name_or_path", ""),
        "data_source": run.data.params.get("data.path", ""),
        "max_length": str(trained.max_length or run.data.params.get("train.max_length", "")),
    }
    if evaluation.decision:
        tags["decision"] = json.dumps(evaluation.decision)[:5000]
    for split_name, metrics in evaluation.metrics.items():
        prefix = SPLIT_PREFIX[split_name]
        tags.update({f"{prefix}_{n}": f"{v:.6f}" for n, v in scalar_metrics(metrics).items()})
    return tags


def card_facts(
    client: MlflowClient,
    version,
    trained: TrainResult,
    evaluation: EvaluationResult,
    split: SplitResult,
    promoted: bool,
    reasons: list[str],
    alias: str,
    baseline: BaselineResult | None = None,
) -> dict:
    tags = client.get_model_version(version.name, str(version.version)).tags
    return {
        "model_name": version.name,
        "version": version.version,
        "gate_passed": promoted or tags.get("gate_passed") == "true",
        "promoted": promoted,
        "alias": alias,
        "reasons": reasons,
        "base_model": tags.get("base_model", ""),
        "labels": trained.labels,
        "task": trained.task,
        "target": split.target,
        "decision": evaluation.decision,
        "baseline": baseline.metrics if baseline else None,
        "training": f"device {trained.device}, precision {trained.precision}, {trained.epochs_run or '?'} epochs, "
        + (f"learning rate {trained.learning_rate:.2e} ({trained.learning_rate_why}), " if isinstance(trained.learning_rate, float) else "")
        + (f"loss weights {trained.loss_weights}" if trained.loss_weights else "unweighted loss"),
        "data_source": tags.get("data_source", ""),
        "data_fingerprint": split.key,
        "config_fingerprint": tags.get("config_fingerprint", ""),
        "sizes": split.sizes,
        "git_revision": tags.get("git_revision", ""),
        "run_id": tags.get("run_id", ""),
        "metrics": evaluation.metrics,
        "max_length": tags.get("max_length", "?"),
        "long_text": trained.long_text,
        "explanations": evaluation.explanations,
    }
