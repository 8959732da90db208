"""The sweep's Optuna study: the search space, each trial's config, the study's name, storage and sampler.

The study lives in an RDB storage (sqlite beside the MLflow store by default), so a killed sweep
resumes: finished trials are kept, trials that were running are failed and asked again with the
same parameters.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from schemas.config import FinetuneConfig, SweepConfig, SweepRange, _set_path
from schemas.errors import ConfigError
from tasks.runtime.cache import fingerprint
from tasks.runtime.logs import step_logger

# Optuna's states by the names the summary uses.
COUNTED = ("completed", "pruned", "failed")
INTERRUPTED = "interrupted"  # user attr of a trial that was running when its sweep was killed (asked again)


# ---------------------------------------------------------------------------------------------------------------- pure helpers


def suggest(trial, space: dict[str, list | SweepRange]) -> dict[str, Any]:
    """The trial's value for each key of the search space (choices are categorical, ranges int or float)."""
    params = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            params[key] = trial.suggest_categorical(key, spec)
        elif all(isinstance(v, int) for v in (spec.low, spec.high, spec.step or 1)) and not spec.log:
            params[key] = trial.suggest_int(key, int(spec.low), int(spec.high), step=int(spec.step or 1))
        else:
            params[key] = trial.suggest_float(
                key, float(spec.low), float(spec.high), log=spec.log, step=float(spec.step) if spec.step and not spec.log else None
            )
    return params


def grid_space(space: dict[str, list | SweepRange]) -> dict[str, list]:
    """The search space as explicit choices (the grid sampler's input); ranges must have a step."""
    grid = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            grid[key] = spec
        else:
            values, value = [], spec.low
            while value <= spec.high + 1e-12:
                values.append(value)
                value = value + spec.step
            grid[key] = values
    return grid


def trial_config(cfg: FinetuneConfig, params: dict[str, Any]) -> FinetuneConfig:
    """The base config with the trial's values set, validated like a command line override."""
    tree = cfg.model_dump(mode="json")
    for key, value in params.items():
        _set_path(tree, key.split("."), copy.deepcopy(value))
    try:
        return FinetuneConfig.model_validate(tree)
    except ValueError as err:
        raise ConfigError(f"sweep.space: the trial values {params} make an invalid config: {str(err).splitlines()[-2].strip()}") from None


def study_name(cfg: FinetuneConfig) -> str:
    """sweep.study, or a name fingerprinting what the trials depend on (not how many, nor where they run)."""
    if cfg.sweep.study:
        return cfg.sweep.study
    tree = cfg.model_dump(
        mode="json",
        exclude={
            "sweep": {"trials", "parallel", "runner", "ray_address", "trial_cpus", "trial_gpus", "storage", "study"},
            "cache": {"refresh"},
        },
    )
    return f"sweep-{fingerprint(tree)[:12]}"


def storage_url(cfg: FinetuneConfig) -> str:
    """sweep.storage, else sqlite optuna.db beside a sqlite MLflow store, else in the cache folder."""
    if cfg.sweep.storage:
        return cfg.sweep.storage
    uri = cfg.tracking.resolved_uri()
    folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else cfg.cache.resolved_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def direction(metric: str) -> str:
    from task_types.base import LOWER_IS_BETTER

    return "minimize" if metric in LOWER_IS_BETTER else "maximize"


def state_name(state) -> str:
    import optuna

    return {
        optuna.trial.TrialState.COMPLETE: "completed",
        optuna.trial.TrialState.PRUNED: "pruned",
        optuna.trial.TrialState.FAIL: "failed",
    }.get(state, state.name.lower())


def count_trials(trials) -> dict[str, int]:
    """Finished trials by outcome; trials interrupted by a kill (and asked again) are not counted."""
    counts = dict.fromkeys(COUNTED, 0)
    for t in trials:
        name = state_name(t.state)
        if name in counts and not t.user_attrs.get(INTERRUPTED):
            counts[name] += 1
    return counts


# -------------------------------------------------------------------------------------------------------------------- the study


def _sampler(sweep: SweepConfig, seed: int):
    import optuna

    if sweep.sampler == "grid":
        return optuna.samplers.GridSampler(grid_space(sweep.space), seed=seed)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials running at once (K) are not all sent to the same promising spot.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def pruner(sweep: SweepConfig):
    import optuna

    if not sweep.pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=sweep.prune_after_trials, n_warmup_steps=0)


def open_study(cfg: FinetuneConfig, metric: str):
    """Create or load the sweep's study; trials left RUNNING by a killed sweep are failed and queued again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage_url(cfg)
    study = optuna.create_study(
        study_name=study_name(cfg),
        storage=storage,
        load_if_exists=True,
        direction=direction(metric),
        sampler=_sampler(cfg.sweep, cfg.seed),
        pruner=pruner(cfg.sweep),
    )
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(stale._trial_id, INTERRUPTED, True)
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(stale.params, user_attrs={"restarted_from": stale.number}, skip_if_exists=False)
        step_logger().info("sweep: trial %d was running when its sweep stopped; asked again with the same parameters", stale.number)
    study.set_user_attr("metric", metric)
    study.set_user_attr("storage", storage)
    return study
