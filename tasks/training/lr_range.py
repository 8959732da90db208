"""train.learning_rate=auto: a learning-rate range test on the run's own training data (Smith, 2017; fastai's lr_find).

The model the run would train (same head, dropout, frozen layers, layer-wise groups) takes RANGE_STEPS optimizer steps
on shuffled training batches while the rate grows exponentially from RANGE_START to RANGE_END; the test stops once
the smoothed loss (a bias-corrected exponential moving average) diverges. The pick reads a steadier curve: the median of
each MEDIAN_WINDOW consecutive losses, then a lighter moving average. The median drops the single batches whose loss
spikes or dips once the rate grows large; the plain average followed them, and its minimum moved with them (from
6.0e-4 in bf16 to 2.7e-3 in fp32 on the same data and seed: bench/README.md). The rate picked is the one where that
curve is lowest (where the rate starts to be too large) divided by the task type's `lr_pick_divisor` (a tenth still
learns fast and stays stable), kept within [PICK_FLOOR, PICK_CEIL]. Nothing of the test is kept but the curve:
training starts from the pretrained weights again.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

RANGE_START, RANGE_END, RANGE_STEPS = 1e-6, 1e-2, 50
SMOOTHING = 0.9
MEDIAN_WINDOW, PICK_SMOOTHING = 5, 0.7  # the curve the pick reads: the median of 5 steps, then a lighter average
DIVERGED = 4.0  # the smoothed loss this many times its minimum (after a few steps): the rate is far too large
PICK_DIVISOR = 10.0  # TaskType.lr_pick_divisor's default
PICK_FLOOR, PICK_CEIL = 1e-5, 1e-3


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average of the losses."""
    average, out = 0.0, []
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**i))
    return out


def steady(losses: list[float]) -> list[float]:
    """The curve the pick reads: each step's median over a centred window of MEDIAN_WINDOW losses (a loss that is not
    finite counts as +inf), then smoothed with PICK_SMOOTHING."""
    values = np.where(np.isfinite(np.asarray(losses, dtype=float)), losses, np.inf)
    half = MEDIAN_WINDOW // 2
    medians = [float(np.median(values[max(0, i - half) : i + half + 1])) for i in range(len(values))]
    return smooth(medians, PICK_SMOOTHING)


def pick_rate(rates: list[float], losses: list[float], divisor: float = PICK_DIVISOR) -> tuple[float, str]:
    """(rate, why): the rate at the steady curve's minimum / divisor, within [PICK_FLOOR, PICK_CEIL]."""
    curve = steady(losses)
    # The step that stopped a test cut short (a loss not finite, or diverged) is never the pick, whatever its window says.
    last = len(losses) - 1 if len(losses) < RANGE_STEPS else len(losses)
    finite = [i for i, v in enumerate(curve) if math.isfinite(v) and math.isfinite(losses[i]) and i != last]
    if not finite:
        return PICK_FLOOR, f"train.learning_rate=auto: the range test's loss was never finite; {PICK_FLOOR:g}"
    best = min(finite, key=lambda i: curve[i])
    chosen = float(min(PICK_CEIL, max(PICK_FLOOR, rates[best] / divisor)))
    return chosen, (
        f"train.learning_rate=auto: {chosen:.2e} (range test over {len(losses)} steps from {rates[0]:.0e}: loss (median of "
        f"{MEDIAN_WINDOW} steps, smoothed) lowest "
        f"at {rates[best]:.2e}, divided by {divisor:g}, kept within {PICK_FLOOR:g}..{PICK_CEIL:g})"
    )


def range_test(tokens, model_cfg, train, task: str, seed: int, device: str, precision: str) -> dict:
    """Run the range test; {"rates", "losses", "learning_rate", "why", "seconds"}."""
    import torch
    from datasets import load_from_disk
    from torch.utils.data import DataLoader
    from transformers import AutoTokenizer

    from schemas.config import resolve_model_path
    from task_types import get_task_type
    from tasks.training.layers import layer_param_groups, train_used_rows
    from tasks.training.recipe import build_model

    started = time.perf_counter()
    task_type = get_task_type(task)
    model, _ = build_model(tokens, model_cfg, train, task, device, seed)
    model.to(device).train()
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model_path(model_cfg.name_or_path), use_fast=True, trust_remote_code=model_cfg.trust_remote_code
    )
    data = load_from_disk(tokens.paths["train"])
    data = data.remove_columns([c for c in task_type.feature_columns if c in data.column_names])
    train_used_rows(model, data.with_format("arrow")["input_ids"], train.embedding_rows)  # as the fine-tuning trains
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(data, batch_size=train.batch_size, shuffle=True, generator=generator, collate_fn=task_type.collator(tokenizer))
    decay = train.layer_lr_decay if isinstance(train.layer_lr_decay, float) else task_type.default_layer_lr_decay
    groups = layer_param_groups(model, 1.0, train.weight_decay, decay)  # each group's factor of the rate
    factors = [g["lr"] for g in groups]
    optimizer = torch.optim.AdamW(groups, lr=RANGE_START)
    rates, losses, batches = [], [], iter(loader)
    for step in range(RANGE_STEPS):
        rate = RANGE_START * (RANGE_END / RANGE_START) ** (step / (RANGE_STEPS - 1))
        for group, factor in zip(optimizer.param_groups, factors):
            group["lr"] = rate * factor
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        rates.append(rate)
        losses.append(float(loss.detach().float()))
        curve = smooth(losses)
        if not math.isfinite(losses[-1]) or (step >= 5 and curve[-1] > DIVERGED * min(curve)):
            break
    chosen, why = pick_rate(rates, losses, task_type.lr_pick_divisor)
    return {"rates": rates, "losses": losses, "learning_rate": chosen, "why": why, "seconds": round(time.perf_counter() - started, 2)}


def plot_range(curve: dict, path: Path) -> None:
    """The range test's loss (raw and the steady curve the pick reads) against the rate, with the rate picked."""
    from task_types.base import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["rates"], curve["losses"], alpha=0.35, label="loss")
    ax.plot(curve["rates"], steady(curve["losses"]), label=f"median of {MEDIAN_WINDOW}, smoothed")
    ax.axvline(curve["learning_rate"], color="red", linestyle="--", label=f"picked {curve['learning_rate']:.1e}")
    ax.set_xscale("log")
    low, high = np.nanmin(curve["losses"]), np.nanpercentile(curve["losses"], 90)
    if np.isfinite(low) and np.isfinite(high) and high > low:
        ax.set_ylim(low * 0.9, high * 1.1)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test (train.learning_rate=auto)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
