"""Word-level inference for task=token_classification, shared by evaluation, champion re-scoring and predict.

Windows (tagging.py) go through the model in length-sorted batches; the logits of each word's owned first piece
are read back and merged per sentence, so every word gets exactly one output.
"""

from __future__ import annotations

import numpy as np

from task_types.classification import softmax
from task_types.inference import INPUT_FEATURES, forward_batches
from task_types.token_classification.tagging import encode_sentences, join_words, merge_windows, split_words


def window_logits(model, tokenizer, columns: dict, runner) -> list[np.ndarray]:
    """Per window (pieces x tags) logits, in the order given."""
    lengths = [len(ids) for ids in columns["input_ids"]]
    out: list[np.ndarray | None] = [None] * len(lengths)

    def read(output, idx):
        logits = output.logits.float().cpu().numpy()
        for j, i in enumerate(idx):
            out[i] = logits[j, : lengths[i]]

    forward_batches(model, tokenizer, columns, runner, read)
    return out


def _rows(row_ids: list[int]) -> tuple[list[int], list[int]]:
    """(each window's sentence index, in order of first appearance; the distinct row ids in that order)."""
    index: dict[int, int] = {}
    rows = [index.setdefault(r, len(index)) for r in row_ids]
    return rows, list(index)


def scored_split(model, tokenizer, dataset, spec: dict, runner) -> tuple[list, list]:
    """(true tag ids per sentence, tag logits per sentence's words) of a tokenized split (one row per window)."""
    columns = {k: dataset[k] for k in (*INPUT_FEATURES, "word_ids", "labels", "row_id") if k in dataset.column_names}
    rows, distinct = _rows(columns["row_id"])
    n_words = [0] * len(distinct)
    for row, marks in zip(rows, columns["word_ids"]):
        n_words[row] += sum(1 for m in marks if m >= 0)
    logits = window_logits(model, tokenizer, columns, runner)
    merged = merge_windows(rows, columns["word_ids"], logits, n_words)
    truth = merge_windows(rows, columns["word_ids"], [np.asarray(window) for window in columns["labels"]], n_words)
    return [t.astype(np.int64) for t in truth], [m.reshape(-1, len(spec["labels"])) for m in merged]


def word_probabilities(model, tokenizer, sentences: list[list[str]], max_length: int, runner) -> list[np.ndarray]:
    """Tag probabilities (words x tags) for each sentence of words, windowed like training."""
    empty = np.zeros((0, model.config.num_labels), dtype=np.float32)
    todo = [i for i, s in enumerate(sentences) if s]
    if len(todo) < len(sentences):  # a row without words gets no tags (and costs no forward pass)
        found = word_probabilities(model, tokenizer, [sentences[i] for i in todo], max_length, runner) if todo else []
        out = [empty] * len(sentences)
        for i, p in zip(todo, found):
            out[i] = p
        return out
    windows, _ = encode_sentences(tokenizer, sentences, max_length)
    columns = {"input_ids": [w.input_ids for w in windows], "attention_mask": [[1] * len(w.input_ids) for w in windows]}
    if "token_type_ids" in tokenizer.model_input_names:
        columns["token_type_ids"] = [[0] * len(w.input_ids) for w in windows]
    logits = window_logits(model, tokenizer, columns, runner)
    merged = merge_windows([w.row for w in windows], [w.word_ids for w in windows], logits, [len(s) for s in sentences])
    return [softmax(m.reshape(len(s), -1)) for m, s in zip(merged, sentences)]


def rows_to_words(values: list, pre_tokenized: bool = False) -> list[dict]:
    """Per input cell: raw text split into words by the documented rule (tagging.split_words), or a list of words
    (pre-tokenized rows; with pre_tokenized also a JSON list in a text cell) joined by single spaces;
    {"text", "words", "starts", "ends"}."""
    from task_types.token_classification import parse_list

    out = []
    for value in values:
        if pre_tokenized and isinstance(value, str):
            value = parse_list(value) if parse_list(value) is not None else value
        if isinstance(value, (list, tuple, np.ndarray)):
            words = [str(w) for w in value]
            text, starts, ends = join_words(words)
        else:
            text = "" if value is None else str(value)
            found = split_words(text)
            words, starts, ends = [w for w, _, _ in found], [s for _, s, _ in found], [e for _, _, e in found]
        out.append({"text": text, "words": words, "starts": starts, "ends": ends})
    return out


def tag_outputs(model, tokenizer, values: list, max_length: int, runner, pre_tokenized: bool = False) -> list[dict]:
    """What the token-classification type's predict_columns reads: per row its words, offsets and tag probabilities."""
    rows = rows_to_words(values, pre_tokenized)
    proba = word_probabilities(model, tokenizer, [r["words"] for r in rows], max_length, runner)
    return [{**row, "proba": p} for row, p in zip(rows, proba)]
