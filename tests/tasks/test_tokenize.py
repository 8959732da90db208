import numpy as np
import pandas as pd
from datasets import load_from_disk
from transformers import AutoTokenizer

from schemas.config import CacheConfig, ModelConfig
from tasks.tokenize import encode, length_stats, tokenize_data


def test_encode_truncates_and_reports_full_length(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoded, lengths = encode(tokenizer, ["short one", "word " * 50], max_length=16)
    assert [len(ids) for ids in encoded["input_ids"]] == [lengths[0], 16]
    assert lengths[1] > 16


def test_length_stats():
    stats = length_stats(np.array([10, 20, 30, 100]), max_length=32)
    assert stats["max"] == 100 and stats["truncated"] == 1 and stats["fraction_truncated"] == 0.25
    assert length_stats(np.array([], dtype=int), 8)["truncated"] == 0


def _split(tmp_path):
    paths = {}
    for name in ("train", "validation", "test"):
        frame = pd.DataFrame({"row_id": [0, 1], "text": ["good film", "bad " * 40], "label": ["pos", "neg"], "label_id": [1, 0]})
        paths[name] = str(tmp_path / f"{name}.parquet")
        frame.to_parquet(paths[name])
    return {"paths": paths, "key": "split-key", "labels": ["neg", "pos"], "target": {"labels": ["neg", "pos"]}}


def test_tokenize_cached_by_split_tokenizer_and_max_length(tmp_path, tiny_model_dir):
    split, cache = _split(tmp_path), CacheConfig(dir=str(tmp_path / "c"))
    model = ModelConfig(name_or_path=str(tiny_model_dir))
    first = tokenize_data.fn(split, model, 16, cache)
    again = tokenize_data.fn(split, model, 16, cache)
    longer = tokenize_data.fn(split, model, 64, cache)
    assert again["reused"] and again["key"] == first["key"]
    assert not longer["reused"] and longer["key"] != first["key"]
    assert first["lengths"]["train"]["truncated"] == 1
    dataset = load_from_disk(first["paths"]["train"])
    assert dataset["labels"] == [1, 0] and max(len(x) for x in dataset["input_ids"]) == 16
