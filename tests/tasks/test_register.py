import pytest

from schemas.config import RegistryConfig
from tasks.register import should_promote

GATES = RegistryConfig(min_accuracy=0.8, min_f1=0.8, min_delta=0.01)


def test_passes_without_a_champion():
    decision = should_promote({"val_accuracy": 0.85, "val_f1": 0.84}, None, GATES)
    assert decision.promote
    assert "no current champion" in decision.reasons


def test_every_failed_gate_is_reported_together():
    decision = should_promote({"val_accuracy": 0.7, "val_f1": 0.6}, {"version": "3", "val_f1": 0.9}, GATES)
    assert not decision.promote
    assert len(decision.reasons) == 3
    assert any("val_accuracy 0.7000 < min_accuracy 0.8" in r for r in decision.reasons)
    assert any("val_f1 0.6000 < min_f1 0.8" in r for r in decision.reasons)
    assert any("does not beat champion v3" in r for r in decision.reasons)


@pytest.mark.parametrize("champion_f1, promote", [(0.80, True), (0.85, False), (0.845, False), (0.90, False)])
def test_champion_comparison_better_tie_worse(champion_f1, promote):
    # min_delta 0.01: the candidate (0.85) must beat the champion by more than 0.01
    decision = should_promote({"val_accuracy": 0.9, "val_f1": 0.85}, {"version": "1", "val_f1": champion_f1}, GATES)
    assert decision.promote is promote


def test_promote_false_registers_without_promotion():
    decision = should_promote({"val_accuracy": 0.9, "val_f1": 0.9}, None, RegistryConfig(promote=False))
    assert not decision.promote
    assert decision.reasons[-1].startswith("registry.promote=false")
