import numpy as np
import pytest

from tasks.evaluate import classification_metrics, length_order, plot_confusion


def test_metrics_against_hand_computed_values():
    metrics = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["neg", "pos"])
    assert metrics["accuracy"] == 0.75
    # neg: p=1, r=.5, f1=2/3; pos: p=2/3, r=1, f1=.8
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert metrics["per_class"]["neg"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert metrics["confusion_matrix"] == [[1, 1], [0, 2]]


def test_metrics_with_a_class_never_predicted():
    metrics = classification_metrics([0, 1, 2], [0, 0, 0], ["a", "b", "c"])
    assert metrics["per_class"]["b"]["recall"] == 0.0
    assert metrics["f1_macro"] < metrics["accuracy"] + 1e-9


def test_length_order_sorts_and_is_stable():
    assert length_order([5, 2, 5, 1]).tolist() == [3, 1, 0, 2]


def test_confusion_png(tmp_path):
    path = tmp_path / "cm.png"
    plot_confusion([[3, 1], [0, 4]], ["neg", "pos"], "validation", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
