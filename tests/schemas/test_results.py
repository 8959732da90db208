"""Step results (pure): built from cache manifests old and new, and passed between tasks whole."""

import dataclasses
import pickle

import pytest

from schemas.results import CleanResult, DataSteps, IngestResult, RegisterResult, RunSteps, TokenizeResult, TrainResult

TRAIN_META = {
    "device": "cpu",
    "precision": "fp32",
    "resumed_from": None,
    "train_seconds": 3.5,
    "train_samples_per_second": 40.0,
    "train_loss": 0.6,
    "epochs_run": 2.0,
    "best_checkpoint": "checkpoint-10",
    "loss_weights": None,
    "epochs_planned": 2.0,
    "epochs_why": "train.epochs as set",
    "best_metric_name": "f1_macro",
    "best_val_metric": 0.9,
    "history": [{"loss": 0.7, "step": 5}],
    "nproc": 1,
    "frozen_parameters": 0,
}
OWN = {"path": "model", "key": "k", "reused": True, "task": "classification", "labels": ["neg", "pos"], "max_length": 32}


def test_a_result_is_built_from_its_manifest_and_the_steps_own_values():
    result = TrainResult.from_manifest(TRAIN_META, **OWN)
    assert (result.path, result.reused, result.device, result.best_val_metric) == ("model", True, "cpu", 0.9)
    assert result.seconds is None and result.long_text == "truncate"


def test_an_entry_written_before_a_field_existed_still_loads():
    # entries from before train.nproc, train.freeze_layers and epochs=auto: their manifests lack those keys
    older = {k: v for k, v in TRAIN_META.items() if k not in ("nproc", "frozen_parameters", "epochs_planned", "epochs_why")}
    result = TrainResult.from_manifest({**older, "retired_key": 1}, **OWN)
    assert (result.nproc, result.frozen_parameters, result.epochs_planned, result.epochs_why) == (1, 0, None, "")
    assert not hasattr(result, "retired_key")


def test_a_manifest_without_a_field_that_has_no_default_is_an_error():
    with pytest.raises(TypeError, match="history"):
        TrainResult.from_manifest({k: v for k, v in TRAIN_META.items() if k != "history"}, **OWN)


def test_clean_keeps_the_task_types_own_facts_beside_the_counts():
    meta = {"rows_in": 3, "rows_kept": 2, "rows_quarantined": 1, "quarantine_reasons": {"null_text": 1}}
    tagged = CleanResult.from_manifest({**meta, "tag_scheme": "IOB2", "tags_repaired": 4}, path="c", quarantine="q", key="k", reused=False)
    assert tagged.task_facts == {"tag_scheme": "IOB2", "tags_repaired": 4} and tagged.rows_kept == 2
    assert CleanResult.from_manifest(meta, path="c", quarantine="q", key="k", reused=False).task_facts == {}


def test_results_are_frozen_and_travel_whole_between_processes():
    result = TrainResult.from_manifest(TRAIN_META, **OWN)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.reused = False
    timed = dataclasses.replace(result, seconds=1.25)
    assert pickle.loads(pickle.dumps(timed)) == timed and timed.seconds == 1.25 and result.seconds is None


def test_tokenize_counts_truncated_texts_over_all_splits():
    stats = {"p50": 5.0, "p95": 9.0, "max": 40, "fraction_truncated": 0.5}
    tokens = TokenizeResult(
        paths={},
        length_files={},
        key="t",
        reused=False,
        labels=[],
        target={},
        max_length=8,
        lengths={"train": {**stats, "truncated": 2}, "validation": {**stats, "truncated": 1}, "test": {**stats, "truncated": 0}},
    )
    assert tokens.texts_truncated == 3


def test_the_registration_outcome_is_the_summarys_keys_in_order_without_seconds():
    registered = RegisterResult(model_name="m", model_version=2, promoted=False, alias=None, reasons=["r"], seconds=0.5)
    assert list(registered.outcome().items()) == [
        ("model_name", "m"),
        ("model_version", 2),
        ("promoted", False),
        ("alias", None),
        ("reasons", ["r"]),
    ]


def test_run_steps_name_the_steps_in_the_order_they_run():
    names = [f.name for f in dataclasses.fields(RunSteps)]
    assert names == ["ingest", "clean", "split", "tokenize", "report", "baseline", "fine_tune", "evaluate"]
    assert [f.name for f in dataclasses.fields(DataSteps)] == names[:6]
    raw = IngestResult(path="p", key="i", reused=True, rows_read=1, rows_out=1)
    steps = DataSteps(**dict.fromkeys(names[:6], raw))  # one result in every slot: only the names matter here
    assert list(steps.by_name()) == names[:6] and steps.by_name()["ingest"] is raw
