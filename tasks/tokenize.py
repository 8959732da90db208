"""Tokenize: the task type encodes each split for the model (fast tokenizer, max_length, windows for long inputs),
stored as Arrow and re-used by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from schemas.config import CacheConfig, ModelConfig, TrainConfig, resolve_model_path
from schemas.data import SPLITS
from schemas.errors import ConfigError
from schemas.results import SplitResult, TokenizeResult
from task_types import get_task_type
from tasks.runtime.cache import build_step, fingerprint, model_fingerprint
from tasks.runtime.logs import step_logger, timed

TOKENIZE_VERSION = 3  # bump when what tokenize writes changes: cached tokenized splits are rebuilt
TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "merges.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
]


def load_tokenizer(model: ModelConfig):
    from transformers import AutoTokenizer  # here, not at import: a re-run that finds the step cached never loads transformers

    path = resolve_model_path(model.name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot load a tokenizer from '{model.name_or_path}': {str(err).splitlines()[0]}; set model.name_or_path"
        ) from None


@task(name="tokenize")
@timed
def tokenize_data(split: SplitResult, model: ModelConfig, train: TrainConfig, cache: CacheConfig, task: str) -> TokenizeResult:
    """Encode each split for the model and its targets; the entry is keyed by the split, tokenizer files and the encoding options.

    Args:
        split: the split step's result (its target spec fixes the encoding).
        model: which tokenizer to use.
        train: the training section (max_length, long_text and the task type's own encoding options).
        cache: where step outputs live and whether to recompute them.
        task: the task type that encodes inputs and targets.
    Returns:
        paths of the Arrow datasets per split, the key, the target spec, labels and length statistics.
    """
    logger = step_logger()
    tokenizer_path = resolve_model_path(model.name_or_path)
    task_type = get_task_type(task)
    encoding = {name: getattr(train, name) for name in ("max_length", "long_text", *task_type.encoding_options)}
    key = fingerprint("tokenize", TOKENIZE_VERSION, split.key, task, model_fingerprint(tokenizer_path, TOKENIZER_FILES), encoding)

    def make(folder: Path) -> dict:
        from datasets import Dataset
        from datasets.utils.logging import disable_progress_bar

        tokenizer = load_tokenizer(model)
        disable_progress_bar()  # one bar per tiny shard write is noise in the run log
        frames = {name: pd.read_parquet(split.paths[name]) for name in SPLITS}
        plan = task_type.plan_encoding(tokenizer, frames["train"], train)
        stats, windows = {}, {}
        for name, frame in frames.items():
            encoded = task_type.encode_split(tokenizer, frame, split.target, plan, name)
            Dataset.from_dict(encoded.columns).save_to_disk(str(folder / name))
            np.save(folder / f"{name}_lengths.npy", encoded.lengths)  # full lengths, for the data report's histogram
            stats[name] = {k: v for k, v in encoded.stats.items() if k != "chunked"}
            if "chunked" in encoded.stats:
                windows[name] = encoded.stats["chunked"]
        return {**plan, "lengths": stats, "windows": windows, "text_pair": "text_pair" in frames["train"]}

    entry = build_step(cache, "tokenize", key, make)
    result = TokenizeResult.from_manifest(
        entry.meta,
        paths={name: str(entry.path / name) for name in SPLITS},
        length_files={name: str(entry.path / f"{name}_lengths.npy") for name in SPLITS},
        sources=dict(split.paths),
        labels=split.labels,
        target=split.target,
        key=key,
        reused=entry.reused,
    )
    logger.info(
        "tokenize: max_length %d (%s); %s; train p50 %.0f / p95 %.0f tokens, %d inputs longer than max_length%s",
        result.max_length,
        result.max_length_why,
        result.long_text_why,
        result.lengths["train"]["p50"],
        result.lengths["train"]["p95"],
        result.texts_truncated,
        " (cached)" if entry.reused else "",
    )
    return result
