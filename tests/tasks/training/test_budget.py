"""The training budget and loss choices that adapt to the data: epochs, max_length, class weights, calibration."""

import numpy as np
import pytest
import torch

from schemas.config import TrainConfig
from schemas.errors import ConfigError
from task_types import get_task_type
from task_types.sequence import choose_max_length
from tasks.training.recipe import WeightedLossTrainer, choose_epochs


def test_auto_epochs_reach_the_step_budget_on_small_data_and_fewer_passes_on_large():
    assert TrainConfig().epochs == "auto"
    assert choose_epochs("auto", 10_202, 32)[0] == 3  # the default job: 319 steps an epoch
    assert choose_epochs("auto", 640, 32)[0] == 20  # 20 steps an epoch: capped at 20 epochs
    assert choose_epochs("auto", 100_000, 32)[0] == 1
    assert choose_epochs("auto", 10_202, 16, world_size=2)[0] == 3
    epochs, why = choose_epochs(2.5, 640, 32)
    assert epochs == 2.5 and why == "train.epochs as set"
    assert "900" in choose_epochs("auto", 640, 32)[1]


def test_auto_max_length_covers_the_95th_percentile_capped_by_the_model():
    lengths = np.arange(1, 101)  # p95 = 95.05
    assert choose_max_length("auto", lengths, 512)[0] == 96
    assert choose_max_length("auto", lengths * 10, 512)[0] == 512
    assert choose_max_length(64, lengths, 512) == (64, "train.max_length as set")


def test_class_weights_auto_only_when_imbalanced_and_by_name():
    classes = get_task_type("classification")
    spec = {"labels": ["a", "b"]}
    assert classes.loss_weights([0] * 50 + [1] * 50, spec, "auto") is None
    weights = classes.loss_weights([0] * 87 + [1] * 13, spec, "auto")
    assert weights == pytest.approx([100 / (2 * 87), 100 / (2 * 13)], abs=1e-3)
    assert classes.loss_weights([0] * 87 + [1] * 13, spec, "none") is None
    assert classes.loss_weights([0] * 50 + [1] * 50, spec, {"b": 3.0}) == [1.0, 3.0]
    with pytest.raises(ConfigError, match=r"names \['c'\], not labels"):
        classes.loss_weights([0, 1], spec, {"c": 2.0})
    labels = get_task_type("multi_label")
    assert labels.loss_weights([[1.0, 0.0]] * 2 + [[0.0, 0.0]] * 8, spec, "balanced") == [4.0, 1.0]
    assert labels.loss_weights([[1.0, 0.0]] * 2 + [[0.0, 0.0]] * 8, spec, "auto") is None  # the head starts at the base rates instead
    assert labels.loss_weights([[1.0, 0.0]] * 10, spec, "none") is None
    with pytest.raises(ConfigError, match="task=regression takes auto or none"):
        get_task_type("regression").loss_weights([0.1], {}, "balanced")


class _Fixed(torch.nn.Module):
    """A stand-in model whose logits are given, so the loss can be computed by hand."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, **inputs):
        return type("Out", (), {"logits": self.logits})()


def test_weights_enter_the_loss():
    logits, labels = [[2.0, 0.0], [0.0, 1.0]], torch.tensor([1, 1])
    trainer = WeightedLossTrainer.__new__(WeightedLossTrainer)  # only compute_loss is exercised
    trainer.loss_weights, trainer.task_type = torch.tensor([1.0, 1.0]), get_task_type("classification")
    plain = trainer.compute_loss(_Fixed(logits), {"labels": labels})
    trainer.loss_weights = torch.tensor([1.0, 5.0])
    weighted = trainer.compute_loss(_Fixed(logits), {"labels": labels})
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits), labels, weight=torch.tensor([1.0, 5.0]))
    assert weighted == pytest.approx(expected.item()) and plain == pytest.approx(
        torch.nn.functional.cross_entropy(torch.tensor(logits), labels).item()
    )
    trainer.task_type, trainer.loss_weights = get_task_type("multi_label"), torch.tensor([3.0, 1.0])
    multi = trainer.compute_loss(_Fixed(logits), {"labels": torch.tensor([[1.0, 0.0], [0.0, 1.0]])})
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(logits), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), pos_weight=torch.tensor([3.0, 1.0])
    )
    assert multi == pytest.approx(expected.item())


def test_temperature_scaling_lowers_the_calibration_error_of_an_overconfident_model():
    rng = np.random.default_rng(0)
    n = 2000
    truth = rng.integers(0, 2, n)
    margin = rng.normal(1.0, 1.0, n)  # calibrated logits: P(correct) = sigmoid(margin)
    correct = rng.random(n) < 1 / (1 + np.exp(-margin))
    predicted = np.where(correct, truth, 1 - truth)
    logits = np.zeros((n, 2))
    logits[np.arange(n), predicted] = np.abs(margin) * 6  # six times too confident
    classes = get_task_type("classification")
    calibration = classes.calibrate(truth, logits, {"labels": ["a", "b"]})
    assert calibration["temperature"] > 2 and calibration["ece_calibrated"] < calibration["ece_uncalibrated"] / 2
    assert (classes.outputs(logits, {}, calibration).argmax(1) == logits.argmax(1)).all()  # decisions unchanged
    labels = get_task_type("multi_label")
    multi = labels.calibrate(
        np.stack([truth, 1 - truth], 1), np.stack([logits[:, 1] - logits[:, 0]] * 2, 1) * np.array([1, -1]), {"labels": ["a", "b"]}
    )
    assert multi["ece_calibrated"] < multi["ece_uncalibrated"] and len(multi["temperature"]) == 2


def test_auto_batch_size_is_the_largest_of_the_ladder_that_fits_and_32_on_a_cpu():
    from tasks.training.recipe import BATCH_LADDER, choose_batch_size, pick_batch_size

    assert pick_batch_size(lambda size: size <= 128) == 128
    assert pick_batch_size(lambda size: True) == BATCH_LADDER[-1]
    assert pick_batch_size(lambda size: False) == BATCH_LADDER[0]  # nothing fits: the smallest (and the error of training)
    tried = []
    pick_batch_size(lambda size: tried.append(size) or size < 64)
    assert tried == [32, 64]  # the first that does not fit ends the search
    assert choose_batch_size("auto", "cpu") == (32, "train.batch_size=auto: 32 on a CPU")
    assert choose_batch_size(48, "cuda")[0] == 48


def test_auto_epochs_count_examples_so_a_bigger_batch_means_no_more_epochs():
    assert choose_epochs("auto", 10_202, 256)[0] == choose_epochs("auto", 10_202, 32)[0] == 3
    assert "optimizer steps at batch 256" in choose_epochs("auto", 10_202, 256)[1]


def test_pad_to_multiple_of_gives_a_fixed_ladder_of_lengths(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    collate = get_task_type("classification").collator(tokenizer, 16)
    for texts in (["short"], ["a somewhat longer text with more words in it than that"]):
        batch = collate([{**tokenizer(t), "labels": 0} for t in texts])
        assert batch["input_ids"].shape[1] % 16 == 0
