"""Tokenize: fast tokenizer, truncation at max_length, stored as Arrow and re-used by content."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset
from datasets.utils.logging import disable_progress_bar
from prefect import task
from transformers import AutoTokenizer

from schemas.config import MAX_LENGTH, CacheConfig, ModelConfig, resolve_model_path
from schemas.data import SPLITS
from schemas.errors import ConfigError
from schemas.results import SplitResult, TokenizeResult
from task_types import get_task_type
from tasks.runtime.cache import build_step, fingerprint, model_fingerprint
from tasks.runtime.logs import step_logger, timed

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
    path = resolve_model_path(model.name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot load a tokenizer from '{model.name_or_path}': {str(err).splitlines()[0]}; set model.name_or_path"
        ) from None


def encode(tokenizer, texts: list[str], max_length: int, pairs: list[str] | None = None) -> tuple[dict, np.ndarray]:
    """Token ids truncated to max_length, and each text's (or pair's) full length in tokens.

    A pair is encoded as (text, text_pair) with token type ids; `longest_first` trims the longer side first.
    """
    encoded = tokenizer(texts, pairs, truncation="longest_first" if pairs is not None else True, max_length=max_length)
    full = tokenizer(texts, pairs, truncation=False, verbose=False)["input_ids"]
    return dict(encoded), np.fromiter((len(ids) for ids in full), dtype=np.int64, count=len(texts))


AUTO_LENGTH_QUANTILE = 95
AUTO_CHUNK_SHARE = 0.10  # train.long_text=auto chunks when more than this share of training texts is longer than max_length


def choose_long_text(requested: str, train_lengths: np.ndarray, max_length: int, pairs: bool) -> tuple[str, str]:
    """(truncate|chunk, why) for train.long_text."""
    share = float((train_lengths > max_length).mean()) if len(train_lengths) else 0.0
    if requested != "auto":
        return requested, f"train.long_text={requested} ({share:.1%} of training texts are longer than {max_length} tokens)"
    chosen = "chunk" if share > AUTO_CHUNK_SHARE and not pairs else "truncate"
    return chosen, (
        f"train.long_text=auto: {chosen} ({share:.1%} of training texts are longer than {max_length} tokens; "
        f"chunking starts above {AUTO_CHUNK_SHARE:.0%}{', and never for pairs' if pairs else ''})"
    )


def encode_windows(tokenizer, texts: list[str], max_length: int) -> tuple[dict, list[int]]:
    """Each text as overlapping windows of at most max_length tokens (a quarter of it shared with the previous window),
    and for each window the index of its text."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, stride=max(1, max_length // 4), return_overflowing_tokens=True)
    documents = list(encoded.pop("overflow_to_sample_mapping"))
    return dict(encoded), documents


def choose_max_length(requested, train_lengths: np.ndarray, model_limit: int) -> tuple[int, str]:
    """(max_length, why): as set, or auto: the smallest multiple of 8 covering 95% of the training texts, capped by the model."""
    if requested != "auto":
        return int(requested), "train.max_length as set"
    p95 = float(np.percentile(train_lengths, AUTO_LENGTH_QUANTILE)) if len(train_lengths) else 8.0
    chosen = int(min(model_limit, max(8, math.ceil(p95 / 8) * 8)))
    return chosen, f"train.max_length=auto: {chosen} tokens (95th percentile of training lengths {p95:.0f}, model limit {model_limit})"


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
def tokenize_data(
    split: SplitResult,
    model: ModelConfig,
    max_length: int | str,
    cache: CacheConfig,
    task: str = "classification",
    long_text: str = "truncate",
) -> TokenizeResult:
    """Tokenize each split and encode its targets; the entry is keyed by the split, tokenizer files and max_length.

    Args:
        split: the split step's result (its target spec fixes the encoding).
        model: which tokenizer to use.
        max_length: tokens kept per text, or "auto" (chosen from the training texts' lengths).
        cache: where step outputs live and whether to recompute them.
        task: the task type that encodes the targets.
        long_text: train.long_text (the flow passes it): truncate, chunk or auto.
    Returns:
        paths of the Arrow datasets per split, the key, the target spec, labels and length statistics.
    """
    logger = step_logger()
    tokenizer_path = resolve_model_path(model.name_or_path)
    task_type = get_task_type(task)
    key = fingerprint(
        "tokenize",
        2,
        split.key,
        model_fingerprint(tokenizer_path, TOKENIZER_FILES),
        max_length,
        *([long_text] if long_text != "truncate" else []),
    )

    def make(folder: Path) -> dict:
        tokenizer = load_tokenizer(model)
        disable_progress_bar()  # one bar per tiny shard write is noise in the run log
        frames = {name: pd.read_parquet(split.paths[name]) for name in SPLITS}
        pairs = {name: frame["text_pair"].tolist() if "text_pair" in frame else None for name, frame in frames.items()}
        if task_type.word_level:  # words, in overlapping windows: nothing is truncated, whatever the length
            length = MAX_LENGTH if max_length == "auto" else int(max_length)
            why, mode, mode_why = (
                f"train.max_length={max_length}: {length} tokens per window",
                "windows",
                "sentences in overlapping windows",
            )
        else:
            full = tokenizer(frames["train"]["text"].tolist(), pairs["train"], truncation=False, verbose=False)["input_ids"]
            train_lengths = np.array([len(ids) for ids in full])
            length, why = choose_max_length(max_length, train_lengths, min(tokenizer.model_max_length, 512))
            mode, mode_why = choose_long_text(long_text, train_lengths, length, pairs["train"] is not None)
        stats, windows = {}, {}
        for name, frame in frames.items():
            windowed = {}
            if task_type.word_level:
                columns, lengths, windowed = task_type.tokenize(tokenizer, frame, split.target, length)
            else:
                encoded, lengths = encode(tokenizer, frame["text"].tolist(), length, pairs[name])
                targets, row_ids = task_type.encode(frame["label"], split.target), frame["row_id"].tolist()
                columns = {**encoded, "labels": targets, "row_id": row_ids}
                if mode == "chunk":  # one row per window; `document` says which text each came from
                    encoded, documents = encode_windows(tokenizer, frame["text"].tolist(), length)
                    columns = {
                        **encoded,
                        "labels": [targets[d] for d in documents],
                        "row_id": [row_ids[d] for d in documents],
                        "document": documents,
                    }
                    windows[name] = {"documents_chunked": int((lengths > length).sum()), "windows": len(documents), "documents": len(frame)}
            Dataset.from_dict(columns).save_to_disk(str(folder / name))
            np.save(folder / f"{name}_lengths.npy", lengths)  # full lengths, for the data report's histogram
            stats[name] = {**length_stats(lengths, length), **windowed}
        return {
            "lengths": stats,
            "max_length": length,
            "max_length_why": why,
            "long_text": mode,
            "long_text_why": mode_why,
            "windows": windows,
            "text_pair": "text_pair" in frame,
        }

    entry = build_step(cache, "tokenize", key, make)
    result = TokenizeResult.from_manifest(
        entry.meta,
        paths={name: str(entry.path / name) for name in SPLITS},
        length_files={name: str(entry.path / f"{name}_lengths.npy") for name in SPLITS},
        labels=split.labels,
        target=split.target,
        key=key,
        reused=entry.reused,
    )
    logger.info(
        "tokenize: max_length %d (%s); %s; train p50 %.0f / p95 %.0f tokens, %d texts longer than max_length%s",
        result.max_length,
        result.max_length_why,
        result.long_text_why,
        result.lengths["train"]["p50"],
        result.lengths["train"]["p95"],
        result.texts_truncated,
        " (cached)" if entry.reused else "",
    )
    return result
