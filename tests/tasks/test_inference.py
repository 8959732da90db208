import numpy as np

from tasks.inference import length_order, model_task, per_document


def test_length_order_sorts_and_is_stable():
    assert length_order([5, 2, 5, 1]).tolist() == [3, 1, 0, 2]


def test_windows_join_into_one_row_per_document():
    logits = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
    assert per_document(logits, [0, 0, 1]).tolist() == [[2.0, 1.0], [0.0, 4.0]]
    assert per_document(logits, [0, 0, 1], "max").tolist() == [[3.0, 2.0], [0.0, 4.0]]


def test_a_model_without_task_facts_is_a_classifier_of_its_labels():
    config = type("Config", (), {"id2label": {0: "neg", 1: "pos"}, "num_labels": 2})()
    info = model_task(config)
    assert info["task"] == "classification" and info["target"] == {"labels": ["neg", "pos"]} and info["decision"] == {}
