"""The sweep's Optuna study: search space, trial configs, study names, counting and resuming trials."""

import optuna
import pytest

from flows.sweep_study import count_trials, grid_space, open_study, suggest, trial_config
from schemas.config import load_config
from schemas.errors import ConfigError

SPACE = {"train.learning_rate": {"low": 1e-4, "high": 3e-3, "log": True}, "train.freeze_layers": [0, 1]}


def test_trial_config_sets_the_values_and_rejects_bad_ones(make_config):
    cfg = make_config(sweep={"space": SPACE})
    trial = trial_config(cfg, {"train.learning_rate": 2e-4, "train.freeze_layers": 1})
    assert (trial.train.learning_rate, trial.train.freeze_layers, trial.train.batch_size) == (2e-4, 1, cfg.train.batch_size)
    with pytest.raises(ConfigError, match="sweep.space"):
        trial_config(cfg, {"train.batch_size": 0})


def test_suggest_log_ranges_ints_and_choices():
    cfg = load_config(
        None,
        [
            "sweep.space={train.learning_rate: {low: 1e-5, high: 1e-3, log: true}, train.epochs: {low: 1, high: 3}, "
            "model.name_or_path: [a, b]}"
        ],
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = [suggest(study.ask(), cfg.sweep.space) for _ in range(20)]
    assert all(1e-5 <= v["train.learning_rate"] <= 1e-3 for v in values)
    assert {v["train.epochs"] for v in values} <= {1, 2, 3} and all(isinstance(v["train.epochs"], int) for v in values)
    assert {v["model.name_or_path"] for v in values} == {"a", "b"}
    assert isinstance(study.trials[0].distributions["train.learning_rate"], optuna.distributions.FloatDistribution)
    assert study.trials[0].distributions["train.learning_rate"].log


def test_sweep_config_errors_say_what_to_change():
    with pytest.raises(ValueError, match="'train.epoch' is not an option"):
        load_config(None, ["sweep.space={train.epoch: [1, 2]}"])
    with pytest.raises(ValueError, match="grid needs choices or a stepped range"):
        load_config(None, ["sweep.sampler=grid", "sweep.space={train.learning_rate: {low: 1e-5, high: 1e-3}}"])
    with pytest.raises(ValueError, match="cannot be searched"):
        load_config(None, ["sweep.space={registry.min_f1: [0.1]}"])
    grid = load_config(None, ["sweep.sampler=grid", "sweep.space={train.epochs: {low: 1, high: 3, step: 1}, train.batch_size: [8]}"])
    assert grid_space(grid.sweep.space) == {"train.epochs": [1, 2, 3], "train.batch_size": [8]}


def test_count_trials_leaves_out_interrupted_ones():
    study = optuna.create_study()
    for value in (1.0, 2.0):
        study.tell(study.ask(), value)
    interrupted = study.ask()
    interrupted.set_user_attr("interrupted", True)
    study.tell(interrupted, state=optuna.trial.TrialState.FAIL)
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    assert count_trials(study.trials) == {"completed": 2, "pruned": 1, "failed": 0}


def test_reopening_a_study_fails_the_trials_left_running_and_asks_them_again(tmp_path):
    cfg = load_config(
        None, [f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}", "sweep.study=s", "sweep.space={train.batch_size: [8, 16, 32, 64]}"]
    )
    first = open_study(cfg, "f1_macro")
    done = first.ask()
    done.suggest_categorical("train.batch_size", [8, 16, 32, 64])
    first.tell(done, 0.5)
    killed = first.ask()  # the sweep dies while this one trains
    size = killed.suggest_categorical("train.batch_size", [8, 16, 32, 64])

    again = open_study(cfg, "f1_macro")
    states = {t.number: (t.state, t.user_attrs.get("interrupted")) for t in again.trials}
    assert states[done.number] == (optuna.trial.TrialState.COMPLETE, None)
    assert states[killed.number] == (optuna.trial.TrialState.FAIL, True)
    assert count_trials(again.trials) == {"completed": 1, "pruned": 0, "failed": 0}
    restarted = again.ask()
    assert suggest(restarted, cfg.sweep.space) == {"train.batch_size": size}
