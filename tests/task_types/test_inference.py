import numpy as np
import torch

from task_types.inference import attention_kernels, length_order, model_task, per_document


def test_attention_never_picks_cudnn_inside_and_is_restored_after():
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with attention_kernels():
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
        assert torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before


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
