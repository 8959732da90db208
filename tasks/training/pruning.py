"""Pruning a sweep trial while it trains: report the validation metric after each epoch to its Optuna trial.

A library below the train step: fine_tune is handed where the study lives and which trial it runs
(a plain dict, built by flows/sweep.py) and adds this callback; nothing here knows about the sweep's flow.
"""

from __future__ import annotations


class PruneOnEpoch:
    """A TrainerCallback (built lazily) that reports the validation metric after each evaluation and prunes."""

    @staticmethod
    def build(pruning: dict):
        """The callback for one trial; `pruning` holds study, storage, trial_id, metric and startup (trials before pruning starts)."""
        import optuna
        from transformers import TrainerCallback

        class _Prune(TrainerCallback):
            def __init__(self):
                study = optuna.load_study(
                    study_name=pruning["study"],
                    storage=pruning["storage"],
                    pruner=optuna.pruners.MedianPruner(n_startup_trials=pruning["startup"], n_warmup_steps=0),
                )
                self.trial = optuna.trial.Trial(study, pruning["trial_id"])

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                value = (metrics or {}).get(f"eval_{pruning['metric']}")
                if value is None or not state.is_world_process_zero:
                    return
                step = max(1, round(state.epoch or 0))
                self.trial.report(float(value), step)
                # Never at the last evaluation: the trial is finished, its model is kept.
                if state.global_step < state.max_steps and self.trial.should_prune():
                    raise optuna.TrialPruned(f"validation {pruning['metric']} {value:.4f} after epoch {step} is below the median")

        return _Prune()
