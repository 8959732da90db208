"""The promotion gate as a pure decision: every check made and reported together."""

from __future__ import annotations

from dataclasses import dataclass

from task_types.base import LOWER_IS_BETTER, Gate


def no_holder(alias: str) -> str:
    """The reason given when no version holds the alias yet (nothing to beat)."""
    return f"no version holds @{alias} yet"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str]


@dataclass(frozen=True)
class Policy:
    """What a candidate must meet: metric bounds, the metric that must beat the aliased version's, and by how much."""

    gates: list[Gate]
    compare_on: str
    alias: str
    min_delta: float = 0.0
    promote: bool = True
    beat_baseline: bool = True
    baseline_name: str = "TF-IDF baseline"


def _check_gate(gate: Gate, value: float | None) -> tuple[bool, str]:
    if value is None or value != value:  # missing or NaN: a gate cannot pass on an undefined metric
        return False, f"val_{gate.metric} is undefined on this validation split ({gate.option} {gate.bound})"
    ok = value <= gate.bound if gate.ceiling else value >= gate.bound
    sign = ("<=" if ok else ">") if gate.ceiling else (">=" if ok else "<")
    return ok, f"val_{gate.metric} {value:.4f} {sign} {gate.option} {gate.bound}"


def beats(metric: str, value: float, other: float) -> float:
    """How much value is better than other on metric (positive = better; lower is better for errors)."""
    return (other - value) if metric in LOWER_IS_BETTER else (value - other)


def should_promote(
    candidate: dict[str, float], champion: dict | None, policy: Policy, baseline: dict[str, float] | None = None
) -> Decision:
    """candidate, baseline: validation metrics by name; champion: {"version", "value"} of policy.compare_on, or None.

    The candidate must pass every gate, beat its own run's classical baseline on the compare-on metric
    (policy.beat_baseline) and beat the champion's by more than min_delta (lower is better for errors and losses).
    """
    checks = [_check_gate(gate, candidate.get(gate.metric)) for gate in policy.gates]
    metric = policy.compare_on
    if policy.beat_baseline and baseline is not None and metric in baseline:
        value, theirs = candidate.get(metric, float("nan")), baseline[metric]
        gain = beats(metric, value, theirs)
        checks.append(
            (
                gain > 0,
                f"val_{metric} {value:.4f} {'beats' if gain > 0 else 'does NOT beat'} the {policy.baseline_name} "
                f"({theirs:.4f}) (gain {gain:+.4f}; registry.beat_baseline)",
            )
        )
    if champion is not None:
        value = candidate.get(metric, float("nan"))
        lower = metric in LOWER_IS_BETTER
        gain = beats(metric, value, champion["value"])
        better = gain > policy.min_delta
        checks.append(
            (
                better,
                f"val_{metric} {value:.4f} {'beats' if better else 'does not beat'} @{policy.alias} v{champion['version']} "
                f"({champion['value']:.4f}) by more than min_delta {policy.min_delta} "
                f"({'lower is better, ' if lower else ''}gain {gain:+.4f})",
            )
        )
    else:
        checks.append((True, no_holder(policy.alias)))
    passed = all(ok for ok, _ in checks)
    if passed and not policy.promote:
        return Decision(False, [msg for _, msg in checks] + ["registry.promote=false: registered without promotion"])
    return Decision(passed, [msg for ok, msg in checks if passed or not ok])


def policy_for(task_type, registry) -> Policy:
    """The gate policy of a run: the task type's gates (or registry.gates) and its compare-on metric."""
    return Policy(
        task_type.gates(registry),
        registry.compare_on or task_type.compare_on,
        registry.alias,
        registry.min_delta,
        registry.promote,
        registry.beat_baseline,
        task_type.baseline_name,
    )
