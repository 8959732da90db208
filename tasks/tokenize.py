"""Tokenize: fast tokenizer, truncation at max_length, stored as Arrow and re-used by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset
from datasets.utils.logging import disable_progress_bar
from prefect import task
from transformers import AutoTokenizer

from schemas.config import CacheConfig, ModelConfig, resolve_model_path
from schemas.errors import ConfigError
from tasks.logs import step_logger, timed
from schemas.data import SPLITS
from tasks.cache import StepCache, fingerprint, model_fingerprint
from task_types import get_task_type

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "merges.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model"]


def load_tokenizer(model: ModelConfig):
    path = resolve_model_path(model.name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load a tokenizer from '{model.name_or_path}': {str(err).splitlines()[0]}; set model.name_or_path") from None


def encode(tokenizer, texts: list[str], max_length: int, pairs: list[str] | None = None) -> tuple[dict, np.ndarray]:
    """Token ids truncated to max_length, and each text's (or pair's) full length in tokens.

    A pair is encoded as (text, text_pair) with token type ids; `longest_first` trims the longer side first.
    """
    encoded = tokenizer(texts, pairs, truncation="longest_first" if pairs is not None else True, max_length=max_length)
    full = tokenizer(texts, pairs, truncation=False, verbose=False)["input_ids"]
    return dict(encoded), np.fromiter((len(ids) for ids in full), dtype=np.int64, count=len(texts))


def length_stats(lengths: np.ndarray, max_length: int) -> dict:
    """p50/p95/max of text length in tokens and how many texts get truncated."""
    if len(lengths) == 0:
        return {"p50": 0, "p95": 0, "max": 0, "truncated": 0, "fraction_truncated": 0.0}
    truncated = int((lengths > max_length).sum())
    return {
        "p50": float(np.percentile(lengths, 50)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "truncated": truncated,
        "fraction_truncated": truncated / len(lengths),
    }


@task(name="tokenize")
@timed
def tokenize_data(split: dict, model: ModelConfig, max_length: int, cache: CacheConfig, task: str = "classification") -> dict:
    """Tokenize each split and encode its targets; the entry is keyed by the split, tokenizer files and max_length.

    Args:
        split: the split step's result (its target spec fixes the encoding).
        model: which tokenizer to use.
        max_length: tokens kept per text.
        cache: where step outputs live and whether to recompute them.
        task: the task type that encodes the targets.
    Returns:
        paths of the Arrow datasets per split, the key, the target spec, labels and length statistics.
    """
    logger = step_logger()
    tokenizer_path = resolve_model_path(model.name_or_path)
    task_type = get_task_type(task)
    key = fingerprint("tokenize", 2, split["key"], model_fingerprint(tokenizer_path, TOKENIZER_FILES), max_length)

    def make(folder: Path) -> dict:
        tokenizer = load_tokenizer(model)
        disable_progress_bar()  # one bar per tiny shard write is noise in the run log
        stats = {}
        for name in SPLITS:
            frame = pd.read_parquet(split["paths"][name])
            pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
            windowed = {}
            if task_type.word_level:  # words, in overlapping windows: one row per window, nothing truncated
                columns, lengths, windowed = task_type.tokenize(tokenizer, frame, split["target"], max_length)
            else:
                encoded, lengths = encode(tokenizer, frame["text"].tolist(), max_length, pairs)
                columns = {**encoded, "labels": task_type.encode(frame["label"], split["target"]), "row_id": frame["row_id"].tolist()}
            Dataset.from_dict(columns).save_to_disk(str(folder / name))
            np.save(folder / f"{name}_lengths.npy", lengths)  # full lengths, for the data report's histogram
            stats[name] = {**length_stats(lengths, max_length), **windowed}
        return {"lengths": stats, "max_length": max_length, "text_pair": "text_pair" in frame}

    entry = StepCache(cache.resolved_dir(), "tokenize", key).build(make, refresh=cache.refresh)
    truncated = sum(s["truncated"] for s in entry.meta["lengths"].values())
    logger.info(
        "tokenize: max_length %d, train p50 %.0f / p95 %.0f tokens, %d texts truncated%s", max_length,
        entry.meta["lengths"]["train"]["p50"], entry.meta["lengths"]["train"]["p95"], truncated,
        " (cached)" if entry.reused else "",
    )
    paths = {name: str(entry.path / name) for name in SPLITS}
    lengths = {name: str(entry.path / f"{name}_lengths.npy") for name in SPLITS}
    return {"paths": paths, "length_files": lengths, "key": key, "reused": entry.reused, "labels": split["labels"],
            "target": split["target"], **entry.meta}
