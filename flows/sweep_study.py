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
REPEAT = "repeat_of"  # user attr of an asked trial whose values a finished trial already ran (not run, not counted)
MAX_ASKS = 50  # asks for a setting no finished trial ran before the space counts as exhausted


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


def counted(trial) -> bool:
    """A trial that ran: not one interrupted by a kill (asked again) nor one skipped as a repeat of a finished setting."""
    return not trial.user_attrs.get(INTERRUPTED) and REPEAT not in trial.user_attrs


def count_trials(trials) -> dict[str, int]:
    """Finished trials by outcome; trials interrupted by a kill (and asked again) or skipped as repeats are not counted."""
    counts = dict.fromkeys(COUNTED, 0)
    for t in trials:
        name = state_name(t.state)
        if name in counts and counted(t):
            counts[name] += 1
    return counts


def ask_new(study, space: dict) -> tuple[object, dict] | None:
    """(a trial, its values) whose values no finished trial ran (a resumed sampler replays its stream; a small space
    repeats): a repeat is told as failed, marked, and asked again; None when MAX_ASKS asks found nothing new."""
    import optuna

    done = [t.params for t in study.get_trials(deepcopy=False) if t.state.is_finished() and counted(t)]
    for _ in range(MAX_ASKS):
        trial = study.ask()
        params = suggest(trial, space)
        repeat = next((i for i, other in enumerate(done) if other == params), None)
        if repeat is None:
            return trial, params
        study._storage.set_trial_user_attr(trial._trial_id, REPEAT, repeat)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return None


def check_space(cfg: FinetuneConfig) -> None:
    """Every choice and both ends of every range make a valid config on their own: refused before any step runs."""
    for key, spec in cfg.sweep.space.items():
        values = spec if isinstance(spec, list) else [spec.low, spec.high]
        for value in values:
            trial_config(cfg, {key: value})


def check_storage(cfg: FinetuneConfig) -> None:
    """The study's storage opens as an Optuna database (a CSV file or a damaged optuna.db is refused with one line)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    url = storage_url(cfg)
    try:
        optuna.storages.RDBStorage(url, skip_compatibility_check=False).get_all_studies()
    except (SQLAlchemyError, optuna.exceptions.OptunaError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"sweep.storage {url} cannot be opened as an Optuna study database ({first}): point sweep.storage at another "
            "database URL, or move the damaged file away"
        ) from None


# -------------------------------------------------------------------------------------------------------------------- the study


def _sampler(sweep: SweepConfig, seed: int):
    import optuna

    if sweep.sampler == "grid":
        return _Grid(grid_space(sweep.space), seed=seed)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials running at once (K) are not all sent to the same promising spot.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _Grid(grid: dict, seed: int):
    """Optuna's grid sampler without its study.stop() when the grid is used up: that call is only allowed inside
    study.optimize, and this sweep asks and tells by hand (it stops at the grid's size: grid_limit)."""
    import optuna

    class Grid(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            return None

    return Grid(grid, seed=seed)


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
    name = study_name(cfg)
    existing = next((s.n_trials for s in optuna.study.get_all_study_summaries(storage) if s.study_name == name), 0)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction=direction(metric),
        # A resumed study's sampler starts a stream of its own (seed + trials so far): the seed's stream would replay
        # the values its finished trials ran. ask_new() refuses any repeat that remains.
        sampler=_sampler(cfg.sweep, cfg.seed + existing),
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
