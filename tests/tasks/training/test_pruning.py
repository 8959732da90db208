"""Pruning a trial while it trains: the callback's decisions, and what a pruned fine-tune leaves behind."""

import optuna
import pytest


def _study_with_good_trials(tmp_path, value: float = 0.9):
    """An RDB study where three finished trials scored `value` after epoch 1, and a fourth trial just asked."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for _ in range(3):
        study.add_trial(
            optuna.trial.create_trial(value=value, intermediate_values={1: value, 2: value, 3: value}, distributions={}, params={})
        )
    trial = study.ask()
    return {"study": "s", "storage": storage, "trial_id": trial._trial_id, "metric": "f1_macro", "startup": 0}, study, trial


def test_pruning_callback_reports_and_prunes_behind_the_median_but_never_at_the_end(tmp_path):
    from types import SimpleNamespace

    from tasks.training.pruning import PruneOnEpoch

    pruning, study, _ = _study_with_good_trials(tmp_path)
    last = SimpleNamespace(epoch=1.0, global_step=10, max_steps=10, is_world_process_zero=True)
    PruneOnEpoch.build(pruning).on_evaluate(None, last, None, metrics={"eval_f1_macro": 0.1})  # the last evaluation: kept
    assert study.trials[-1].intermediate_values == {1: 0.1}
    early = SimpleNamespace(epoch=1.0, global_step=5, max_steps=10, is_world_process_zero=True)
    ahead = {**pruning, "trial_id": study.ask()._trial_id}
    PruneOnEpoch.build(ahead).on_evaluate(None, early, None, metrics={"eval_f1_macro": 0.95})  # ahead of the median: goes on
    behind = {**pruning, "trial_id": study.ask()._trial_id}
    with pytest.raises(optuna.TrialPruned, match="below the median"):
        PruneOnEpoch.build(behind).on_evaluate(None, early, None, metrics={"eval_f1_macro": 0.1})


def test_a_pruned_fine_tune_leaves_no_cache_entry_and_no_checkpoints(prefect_server, make_config, toy_csv, tmp_path):
    from tasks.clean import clean_data
    from tasks.ingest import ingest_data
    from tasks.split import split_data
    from tasks.tokenize import tokenize_data
    from tasks.train import fine_tune

    cfg = make_config(data={"path": str(toy_csv)}, train={"epochs": 3})
    raw = ingest_data.fn(cfg.data, cfg.cache, cfg.task)
    split = split_data.fn(clean_data.fn(raw, cfg.data, cfg.cache, cfg.task), cfg.data, cfg.cache, cfg.seed, cfg.task)
    tokens = tokenize_data.fn(split, cfg.model, cfg.train, cfg.cache, cfg.task)
    pruning, _, _ = _study_with_good_trials(tmp_path, value=0.99)
    with pytest.raises(optuna.TrialPruned):
        fine_tune.fn(tokens, cfg.model, cfg.train, cfg.cache, cfg.seed, cfg.task, pruning=pruning)
    cache = cfg.cache.resolved_dir()
    assert not [p for p in (cache / "train").glob("*") if not p.name.startswith(".")]
    assert not list((cache / "checkpoints").glob("*/checkpoint-*"))
