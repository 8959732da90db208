import numpy as np
import pandas as pd
from datasets import load_from_disk
from transformers import AutoTokenizer

from schemas.config import CacheConfig, ModelConfig, TrainConfig
from schemas.results import SplitResult
from task_types.sequence import encode, length_stats
from tasks.tokenize import tokenize_data


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
    splits = {name: {"rows": 2} for name in paths}
    return SplitResult(
        paths=paths, key="split-key", reused=False, rows_in=6, labels=["neg", "pos"], target={"labels": ["neg", "pos"]}, splits=splits
    )


def test_tokenize_cached_by_split_tokenizer_and_max_length(tmp_path, tiny_model_dir):
    split, cache = _split(tmp_path), CacheConfig(dir=str(tmp_path / "c"))
    model = ModelConfig(name_or_path=str(tiny_model_dir))
    short = TrainConfig(max_length=16, long_text="truncate")
    first = tokenize_data.fn(split, model, short, cache, "classification")
    again = tokenize_data.fn(split, model, short, cache, "classification")
    longer = tokenize_data.fn(split, model, short.model_copy(update={"max_length": 64}), cache, "classification")
    assert again.reused and again.key == first.key
    assert not longer.reused and longer.key != first.key
    assert first.lengths["train"]["truncated"] == 1 and first.texts_truncated == 3
    dataset = load_from_disk(first.paths["train"])
    assert dataset["labels"] == [1, 0] and max(len(x) for x in dataset["input_ids"]) == 16


def test_a_long_text_becomes_overlapping_windows_and_one_prediction(tiny_model_dir):
    from task_types.inference import per_document
    from task_types.sequence import choose_long_text, encode_windows

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    long_text = " ".join(f"word{i}" for i in range(12))  # ~4 pieces a word: far over 16 tokens
    encoded, documents = encode_windows(tokenizer, ["short text", long_text], max_length=16)
    assert documents[0] == 0 and set(documents[1:]) == {1} and len(documents) >= 3
    assert all(len(ids) <= 16 for ids in encoded["input_ids"])
    first, second = encoded["input_ids"][1], encoded["input_ids"][2]
    assert first[-5:-1] == second[1:5]  # consecutive windows share a quarter of max_length (4 tokens)
    # three windows of one document, one of another: one row each, mean of logits (max for multi-label)
    logits = np.array([[1.0, 0.0], [3.0, 0.0], [5.0, 3.0], [0.0, 1.0]])
    assert per_document(logits, [0, 0, 0, 1]).tolist() == [[3.0, 1.0], [0.0, 1.0]]
    assert per_document(logits, [0, 0, 0, 1], "max").tolist() == [[5.0, 3.0], [0.0, 1.0]]
    assert choose_long_text("auto", np.array([10, 20, 300]), 128, pairs=False)[0] == "chunk"  # a third is longer
    assert choose_long_text("auto", np.array([10] * 95 + [300] * 5), 128, pairs=False)[0] == "truncate"
    assert choose_long_text("auto", np.array([300, 300]), 128, pairs=True)[0] == "truncate"


def test_tokenize_chunked_keeps_every_window_with_its_document(tmp_path, tiny_model_dir):
    split, cache = _split(tmp_path), CacheConfig(dir=str(tmp_path / "c"))
    result = tokenize_data.fn(
        split, ModelConfig(name_or_path=str(tiny_model_dir)), TrainConfig(max_length=16, long_text="chunk"), cache, "classification"
    )
    dataset = load_from_disk(result.paths["train"])
    assert result.long_text == "chunk" and result.windows["train"]["documents_chunked"] == 1
    assert dataset["document"][0] == 0 and set(dataset["document"][1:]) == {1}
    assert dataset["labels"] == [1] + [0] * (len(dataset) - 1)  # every window carries its text's label
