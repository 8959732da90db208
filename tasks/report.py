"""The data report: where every row went, class balance per split, and text length in tokens.

Written as JSON and a PNG histogram (logged to MLflow under data/) and published as a
Prefect markdown artifact, so a reviewer sees what the model was trained on without
opening a notebook.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from prefect import task

from schemas.config import CacheConfig
from schemas.data import SPLITS
from schemas.results import CleanResult, IngestResult, ReportResult, SplitResult, TokenizeResult
from task_types import get_task_type
from tasks.runtime.cache import build_step, fingerprint
from tasks.runtime.logs import publish_markdown, step_logger, timed


def build_report(raw: IngestResult, clean: CleanResult, split: SplitResult, tokens: TokenizeResult, task: str) -> dict:
    """The report as one JSON-able dict (pure: counts come from the steps' results; the task type adds its own facts)."""
    reasons = clean.quarantine_reasons
    return {
        "task": task,
        "source": raw.source,
        "not_data_why": raw.not_data_why,
        "rows": {
            "read": raw.rows_read,
            "not_data": raw.rows_not_data,
            "undecodable": raw.rows_undecodable,
            "clean_in": clean.rows_in,
            "kept": clean.rows_kept,
            "quarantined": clean.rows_quarantined,
            "not_sampled": split.rows_not_sampled,
            **{f"in_{name}": rows for name, rows in split.sizes.items()},
        },
        "quarantined_by_reason": reasons,
        "duplicates_dropped": reasons.get("duplicate", 0),
        "labels": split.labels,
        "class_balance": {name: part["per_class"] for name, part in split.splits.items() if "per_class" in part},
        "empty_label_sets": {name: part["empty_label_sets"] for name, part in split.splits.items() if "empty_label_sets" in part},
        "labels_without_train_positives": split.target.get("no_train_positives", []),
        "target_stats": {name: part["target"] for name, part in split.splits.items() if "target" in part},
        "grouped_by": split.grouped_by,
        "groups": {name: part["groups"] for name, part in split.splits.items() if "groups" in part},
        "text_pair": tokens.text_pair,
        "max_length": tokens.max_length,
        "long_text": tokens.long_text,
        "windows": tokens.windows,
        "tokens": tokens.lengths,
        "quarantine_file": clean.quarantine if clean.rows_quarantined else None,
        **get_task_type(task).report_facts(clean, split, tokens),
    }


def report_markdown(report: dict) -> str:
    rows = report["rows"]
    lines = [
        "# Data report",
        "",
        f"Source `{report['source']}`: {rows['read']} rows read"
        + (f" ({rows['not_data']} left out by the reader: {report.get('not_data_why', 'not data')})" if rows["not_data"] else "")
        + f"; {rows['clean_in']} in = {rows['kept']} kept + {rows['quarantined']} quarantined"
        + (f"; {rows['not_sampled']} kept rows left out by data.max_rows" if rows["not_sampled"] else "")
        + ".",
        "",
        "| quarantine reason | rows |",
        "|---|---|",
        *[f"| {reason} | {n} |" for reason, n in sorted(report["quarantined_by_reason"].items())],
        "",
        *_balance_lines(report),
        "",
        f"| split | {'pair ' if report.get('text_pair') else ''}tokens p50 | p95 | max | truncated at {report['max_length']} |",
        "|---|---|---|---|---|",
        *[
            f"| {name} | {s['p50']:.0f} | {s['p95']:.0f} | {s['max']} | {s['truncated']} ({s['fraction_truncated']:.1%}) |"
            for name, s in report["tokens"].items()
        ],
    ]
    if report.get("windows"):
        lines += [
            "",
            f"Long texts are read in overlapping windows of {report['max_length']} tokens (train.long_text=chunk):",
            *[
                f"- {name}: {w['documents_chunked']} of {w['documents']} texts needed windows; {w['windows']} windows in all"
                for name, w in report["windows"].items()
            ],
        ]
    unknown = {name: s.get("unknown_only", 0) for name, s in report["tokens"].items()}
    if any(unknown.values()):
        lines += [
            "",
            "Texts the tokenizer reads as unknown tokens only (emoji-only, a script outside its vocabulary), kept and trained on "
            "as [UNK] (data.unknown_only=quarantine sets them aside): " + ", ".join(f"{k} {v}" for k, v in unknown.items()) + ".",
        ]
    if report.get("grouped_by"):
        lines += [
            "",
            f"Rows that share a group ({report['grouped_by']}) always fall in the same split; groups per split: "
            + ", ".join(f"{name} {n}" for name, n in report["groups"].items())
            + ".",
        ]
    if report.get("task"):
        lines += get_task_type(report["task"]).report_lines(report)
    if report["quarantine_file"]:
        lines += ["", f"Quarantined rows with their reason: `{report['quarantine_file']}`"]
    return "\n".join(lines) + "\n"


def _balance_lines(report: dict) -> list[str]:
    """Class (or label) counts per split, rows with no label, labels never positive in training, target statistics."""
    lines = []
    if report["class_balance"]:
        labels = report["labels"] or list(dict.fromkeys(k for counts in report["class_balance"].values() for k in counts))
        lines += [
            "| split | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels),
            *[
                f"| {name} | " + " | ".join(str(counts.get(label, 0)) for label in labels) + " |"
                for name, counts in report["class_balance"].items()
            ],
        ]
    if report.get("empty_label_sets"):
        lines += [
            "",
            "Rows where none of the labels applies: " + ", ".join(f"{name} {n}" for name, n in report["empty_label_sets"].items()) + ".",
        ]
    if report.get("labels_without_train_positives"):
        lines += [
            "",
            "**Labels with no positive example in training** (the model cannot learn them): "
            + ", ".join(f"`{label}`" for label in report["labels_without_train_positives"]),
        ]
    if report.get("target_stats"):
        lines += [
            "| split | target mean | std | min | p50 | max |",
            "|---|---|---|---|---|---|",
            *[
                f"| {name} | {t['mean']:.4f} | {t['std']:.4f} | {t['min']:.4f} | {t['p50']:.4f} | {t['max']:.4f} |"
                for name, t in report["target_stats"].items()
                if t
            ],
        ]
    return lines


def plot_lengths(length_files: dict[str, str], max_length: int, path: Path) -> None:
    """Histogram of text length in tokens per split, with the truncation point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = {name: np.load(file) for name, file in length_files.items()}
    top = max([int(v.max()) for v in lengths.values() if len(v)] + [max_length])
    bins = np.linspace(0, top + 1, 50)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in SPLITS:
        if name in lengths and len(lengths[name]):
            ax.hist(lengths[name], bins=bins, alpha=0.5, label=f"{name} ({len(lengths[name])})", density=True)
    ax.axvline(max_length, color="red", linestyle="--", label=f"max_length {max_length} (longer texts are truncated)")
    ax.set_xlabel("text length in tokens")
    ax.set_ylabel("share of texts")
    ax.set_title("Text length per split")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@task(name="report")
@timed
def report_data(
    raw: IngestResult, clean: CleanResult, split: SplitResult, tokens: TokenizeResult, cache: CacheConfig, task: str
) -> ReportResult:
    """Write data_report.json, data_report.md and token_lengths.png; publish the markdown to Prefect.

    Args:
        raw, clean, split, tokens: the data steps' results.
        cache: where step outputs live.
        task: the task type, which adds its own facts (tag scheme, windows over contexts, ...).
    Returns:
        the report folder, its key and how many texts were longer than max_length.
    """
    logger = step_logger()
    key = fingerprint("report", 4, raw.key, clean.key, split.key, tokens.key, task)

    def make(folder: Path) -> dict:
        report = build_report(raw, clean, split, tokens, task)
        (folder / "data_report.json").write_text(json.dumps(report, indent=1))
        (folder / "data_report.md").write_text(report_markdown(report))
        plot_lengths(tokens.length_files, tokens.max_length, folder / "token_lengths.png")
        return report

    entry = build_step(cache, "report", key, make)
    publish_markdown("data-report", report_markdown(entry.meta), "rows, quarantine, class balance, token lengths")
    result = ReportResult(path=str(entry.path), key=key, reused=entry.reused, texts_truncated=tokens.texts_truncated)
    logger.info("report: %s (%d texts truncated at %d tokens)", entry.path / "data_report.md", result.texts_truncated, tokens.max_length)
    return result
