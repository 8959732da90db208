"""The model card (pure): what a reviewer reads on the registered version."""

from tasks.registry.model_card import model_card


def _facts(**extra):
    facts = {
        "model_name": "m",
        "version": 3,
        "gate_passed": True,
        "promoted": True,
        "alias": "champion",
        "reasons": ["no version holds @champion yet"],
        "base_model": "embedded:all-MiniLM-L6-v2",
        "labels": ["neg", "pos"],
        "task": "classification",
        "target": {"labels": ["neg", "pos"]},
        "decision": {"temperature": 1.7, "ece_uncalibrated": 0.08, "ece_calibrated": 0.02},
        "training": "device cpu",
        "data_source": "d.csv",
        "data_fingerprint": "abc",
        "config_fingerprint": "def",
        "sizes": {"train": 8},
        "git_revision": "123",
        "run_id": "r1",
        "max_length": 128,
        "long_text": "truncate",
        "metrics": {"validation": {"accuracy": 0.9, "f1_macro": 0.88}},
        "baseline": {"validation": {"accuracy": 0.8, "f1_macro": 0.79}},
    }
    return {**facts, **extra}


def test_the_card_says_what_the_model_is_how_it_scored_against_its_baseline_and_its_limits():
    card = model_card(_facts())
    assert card.startswith("# m v3") and "promoted to @champion" in card
    assert "Task type: `classification`" in card and "`neg`, `pos`" in card and "T = 1.700" in card
    assert "| validation | 0.9000 | 0.8800 |" in card and "| validation (TF-IDF baseline) | 0.8000 | 0.7900 |" in card
    assert "Texts longer than 128 tokens are truncated" in card


def test_the_card_of_a_chunked_regression_model():
    card = model_card(
        _facts(
            task="regression",
            target={"mean": 0.5, "std": 2.0},
            decision={},
            labels=["value"],
            metrics={"test": {"rmse": 1.0, "spearman": 0.7}},
            baseline=None,
            long_text="chunk",
        )
    )
    assert "Task type: `regression`" in card and "mean 0.5000" in card and "read in overlapping windows" in card
