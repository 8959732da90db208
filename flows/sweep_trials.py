"""One sweep trial as a Prefect task: the normal steps (tokenize, fine-tune, evaluate) with the trial's config.

Every step before fine-tune is a cache hit the trial shares with the other trials; it runs wherever
the sweep's task runner puts it (flows/sweep_runners.py): a local worker process or a Ray worker.
"""

from __future__ import annotations

import time

from prefect import task

from schemas.config import FinetuneConfig
from schemas.results import SplitResult


@task(name="trial", task_run_name="trial-{number}")
def run_trial(number: int, cfg: FinetuneConfig, split: SplitResult, pruning: dict | None, threads: int) -> dict:
    """One trial: tokenize (cached, shared), fine-tune and evaluate with the trial's config.

    Args:
        number: the Optuna trial number.
        cfg: the trial's config (base config with its values set).
        split: the split step's result, shared by every trial.
        pruning: where the study lives and which trial this is, for the pruning callback (None: no pruning).
        threads: torch threads for this trial.
    Returns:
        state (completed|pruned), the tokenize, fine_tune and evaluate results, the validation value, start time.
    """
    import optuna
    import torch

    from tasks.evaluate import evaluate_model
    from tasks.tokenize import tokenize_data
    from tasks.train import fine_tune

    torch.set_num_threads(threads)
    started = time.time()
    tokens = tokenize_data(split, cfg.model, cfg.train, cfg.cache, cfg.task)
    try:
        trained = fine_tune(tokens, cfg.model, cfg.train, cfg.cache, cfg.seed, cfg.task, cfg.registry.compare_on, pruning=pruning)
    except optuna.TrialPruned as err:
        return {"number": number, "state": "pruned", "reason": str(err), "tokens": tokens, "started": started, "ended": time.time()}
    evaluation = evaluate_model(trained, tokens, cfg.eval, cfg.train, cfg.cache)
    return {
        "number": number,
        "state": "completed",
        "tokens": tokens,
        "fine_tune": trained,
        "evaluate": evaluation,
        "started": started,
        "ended": time.time(),
    }


@task(name="warm-up")
def warm_up() -> None:
    """Import what a trial needs in a fresh worker process while the sweep prepares its data, so the first
    trials do not pay for it (local worker processes start cold; the imports take seconds)."""
    import datasets  # noqa: F401
    import transformers  # noqa: F401

    import tasks.evaluate  # noqa: F401
    import tasks.tokenize  # noqa: F401
    import tasks.train  # noqa: F401
