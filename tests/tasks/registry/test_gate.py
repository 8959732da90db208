import pytest

from schemas.config import RegistryConfig
from task_types import get_task_type
from tasks.registry.gate import policy_for, should_promote

CLASSIFICATION = policy_for(get_task_type("classification"), RegistryConfig(min_accuracy=0.8, min_f1=0.8, min_delta=0.01))


def test_passes_without_a_champion():
    decision = should_promote({"accuracy": 0.85, "f1_macro": 0.84}, None, CLASSIFICATION)
    assert decision.promote
    assert "no version holds @champion yet" in decision.reasons


def test_every_failed_gate_is_reported_together():
    decision = should_promote({"accuracy": 0.7, "f1_macro": 0.6}, {"version": "3", "value": 0.9}, CLASSIFICATION)
    assert not decision.promote
    assert len(decision.reasons) == 3
    assert any("val_accuracy 0.7000 < registry.min_accuracy 0.8" in r for r in decision.reasons)
    assert any("val_f1_macro 0.6000 < registry.min_f1 0.8" in r for r in decision.reasons)
    assert any("does not beat @champion v3" in r for r in decision.reasons)


@pytest.mark.parametrize("champion_f1, promote", [(0.80, True), (0.85, False), (0.845, False), (0.90, False)])
def test_champion_comparison_better_tie_worse(champion_f1, promote):
    # min_delta 0.01: the candidate (0.85) must beat the champion by more than 0.01
    decision = should_promote({"accuracy": 0.9, "f1_macro": 0.85}, {"version": "1", "value": champion_f1}, CLASSIFICATION)
    assert decision.promote is promote


def test_promote_false_registers_without_promotion():
    decision = should_promote(
        {"accuracy": 0.9, "f1_macro": 0.9}, None, policy_for(get_task_type("classification"), RegistryConfig(promote=False))
    )
    assert not decision.promote
    assert decision.reasons[-1].startswith("registry.promote=false")


def test_task_defaults_ceilings_and_lower_is_better_comparison():
    regression = policy_for(get_task_type("regression"), RegistryConfig())
    assert [(g.metric, g.bound) for g in regression.gates] == [("spearman", 0.3), ("r2", 0.0)] and regression.compare_on == "spearman"
    assert policy_for(get_task_type("multi_label"), RegistryConfig()).compare_on == "f1_micro"
    # a ceiling on an error: rmse 0.9 passes a 1.0 ceiling, 1.1 does not
    errors = policy_for(get_task_type("regression"), RegistryConfig(gates={"rmse": 1.0}, compare_on="rmse"))
    assert should_promote({"rmse": 0.9}, None, errors).promote
    failed = should_promote({"rmse": 1.1}, None, errors)
    assert not failed.promote and "val_rmse 1.1000 > registry.gates.rmse 1.0" in failed.reasons[0]
    # lower rmse beats the champion; higher does not
    assert should_promote({"rmse": 0.5}, {"version": "2", "value": 0.6}, errors).promote
    assert not should_promote({"rmse": 0.7}, {"version": "2", "value": 0.6}, errors).promote


def test_an_undefined_metric_fails_its_gate():
    decision = should_promote({"spearman": float("nan"), "r2": 0.5}, None, policy_for(get_task_type("regression"), RegistryConfig()))
    assert not decision.promote and "undefined" in decision.reasons[0]


def test_the_baseline_gate_on_the_compare_on_metric():
    policy = policy_for(get_task_type("classification"), RegistryConfig(min_accuracy=0, min_f1=0))
    assert should_promote({"accuracy": 0.9, "f1_macro": 0.85}, None, policy, {"accuracy": 0.95, "f1_macro": 0.80}).promote
    lost = should_promote({"accuracy": 0.9, "f1_macro": 0.80}, None, policy, {"accuracy": 0.8, "f1_macro": 0.80})
    assert not lost.promote and lost.reasons == [
        "val_f1_macro 0.8000 does NOT beat the TF-IDF baseline (0.8000) (gain +0.0000; registry.beat_baseline)"
    ]
    off = policy_for(get_task_type("classification"), RegistryConfig(min_accuracy=0, min_f1=0, beat_baseline=False))
    assert should_promote({"accuracy": 0.9, "f1_macro": 0.80}, None, off, {"accuracy": 0.8, "f1_macro": 0.90}).promote
    # lower is better for errors: a smaller rmse beats the baseline's
    errors = policy_for(get_task_type("regression"), RegistryConfig(gates={"rmse": 10.0}, compare_on="rmse"))
    assert should_promote({"rmse": 0.5}, None, errors, {"rmse": 0.7}).promote
    assert not should_promote({"rmse": 0.9}, None, errors, {"rmse": 0.7}).promote
