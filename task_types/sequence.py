"""What the sequence-level task types share (a label, labels or a value per text or text pair): reading text and
text-pair columns, normalising them, encoding them (truncated, or in overlapping windows for long texts), running a
sequence-classification head to logits, TF-IDF features for the baseline, and predict's text columns.

Classification, multi-label and regression subclass SequenceTask and bring only their target: validation,
encoding, head, loss, metrics and outputs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from task_types.base import Encoded, Runner, TaskType, scalar_metrics
from task_types.text import normalise_texts

AUTO_LENGTH_QUANTILE = 95
AUTO_CHUNK_SHARE = 0.10  # train.long_text=auto chunks when more than this share of training texts is longer than max_length
MODEL_LENGTH_CAP = 512  # positions of the BERT-style encoders this serves


def encode(tokenizer, texts: list[str], max_length: int, pairs: list[str] | None = None) -> tuple[dict, np.ndarray]:
    """Token ids truncated to max_length, and each text's (or pair's) full length in tokens.

    A pair is encoded as (text, text_pair) with token type ids; `longest_first` trims the longer side first.
    """
    encoded = tokenizer(texts, pairs, truncation="longest_first" if pairs is not None else True, max_length=max_length)
    full = tokenizer(texts, pairs, truncation=False, verbose=False)["input_ids"]
    return dict(encoded), np.fromiter((len(ids) for ids in full), dtype=np.int64, count=len(texts))


def encode_windows(tokenizer, texts: list[str], max_length: int) -> tuple[dict, list[int]]:
    """Each text as overlapping windows of at most max_length tokens (a quarter of it shared with the previous window),
    and for each window the index of its text."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, stride=max(1, max_length // 4), return_overflowing_tokens=True)
    documents = list(encoded.pop("overflow_to_sample_mapping"))
    return dict(encoded), documents


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


def choose_max_length(requested, train_lengths: np.ndarray, model_limit: int) -> tuple[int, str]:
    """(max_length, why): as set, or auto: the smallest multiple of 8 covering 95% of the training texts, capped by the model."""
    if requested != "auto":
        return int(requested), "train.max_length as set"
    p95 = float(np.percentile(train_lengths, AUTO_LENGTH_QUANTILE)) if len(train_lengths) else 8.0
    chosen = int(min(model_limit, max(8, math.ceil(p95 / 8) * 8)))
    return chosen, f"train.max_length=auto: {chosen} tokens (95th percentile of training lengths {p95:.0f}, model limit {model_limit})"


def length_stats(lengths: np.ndarray, max_length: int) -> dict:
    """p50/p95/max of input length in tokens and how many inputs get truncated."""
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


def unknown_only_mask(tokenizer, texts: list[str]) -> np.ndarray:
    """Texts whose pieces (special tokens aside) are all the unknown token: emoji-only, scripts outside the vocabulary."""
    unknown = tokenizer.unk_token_id
    pieces = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return np.array([bool(ids) and all(i == unknown for i in ids) for ids in pieces], dtype=bool)


def tfidf_features(parts: dict[str, pd.DataFrame]) -> dict:
    """TF-IDF of word 1-2-grams fitted on the train split; for pairs each side, and their elementwise product."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    pairs = "text_pair" in parts["train"]
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), min_df=2 if len(parts["train"]) >= 1000 else 1, sublinear_tf=True, max_features=500_000
    )
    vectorizer.fit(pd.concat([parts["train"]["text"], parts["train"]["text_pair"]]) if pairs else parts["train"]["text"])
    features = {}
    for name, part in parts.items():
        a = vectorizer.transform(part["text"])
        features[name] = sp.hstack([a, b := vectorizer.transform(part["text_pair"]), a.multiply(b)]).tocsr() if pairs else a
    return features


def logits_for_texts(
    model,
    tokenizer,
    texts: list[str],
    max_length: int,
    runner: Runner,
    pairs: list[str] | None = None,
    chunk: bool = False,
    how: str = "mean",
) -> np.ndarray:
    """Raw logits for raw texts (or text pairs), truncated like training, in the order given; with chunk, each
    text is read in overlapping windows (as in training) and the windows' logits are joined per text."""
    from task_types.inference import per_document, predict_logits

    if chunk and pairs is None:
        encoded, documents = encode_windows(tokenizer, list(texts), max_length)
        return per_document(predict_logits(model, tokenizer, encoded, runner), documents, how)
    encoded = tokenizer(
        list(texts),
        None if pairs is None else list(pairs),
        truncation="longest_first" if pairs is not None else True,
        max_length=max_length,
    )
    return predict_logits(model, tokenizer, dict(encoded), runner)


class SequenceTask(TaskType):
    """A target per text or text pair, read by a sequence-classification head over the [CLS] representation."""

    window_aggregate: str = "mean"  # how a chunked text's window logits become one (train.long_text=chunk)
    feature_columns = ("row_id", "document")
    reads_plain_text = True

    def unknown_only(self, tokenizer, kept: pd.DataFrame) -> pd.Series:
        mask = unknown_only_mask(tokenizer, kept["text"].tolist())
        if "text_pair" in kept:
            mask |= unknown_only_mask(tokenizer, kept["text_pair"].tolist())
        return pd.Series(mask, index=kept.index)

    # ---- clean -------------------------------------------------------------------------------------
    def clean_rows(self, frame: pd.DataFrame, data) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
        inputs = pd.DataFrame({"text": normalise_texts(frame["raw_text"])}, index=frame.index)
        if "raw_text_pair" in frame:
            inputs["text_pair"] = normalise_texts(frame["raw_text_pair"])
        target, reason = self.validate_targets(frame["label"].astype(object), data)
        return inputs, target, reason

    def validate_targets(self, labels: pd.Series, data) -> tuple[pd.Series, pd.Series]:
        """(canonical target string or None, quarantine reason or None) per row; labels are non-empty strings."""
        raise NotImplementedError

    # ---- tokenize ----------------------------------------------------------------------------------
    def plan_encoding(self, tokenizer, train: pd.DataFrame, train_cfg) -> dict:
        pairs = train["text_pair"].tolist() if "text_pair" in train else None
        full = tokenizer(train["text"].tolist(), pairs, truncation=False, verbose=False)["input_ids"]
        lengths = np.array([len(ids) for ids in full])
        length, why = choose_max_length(train_cfg.max_length, lengths, min(tokenizer.model_max_length, MODEL_LENGTH_CAP))
        mode, mode_why = choose_long_text(train_cfg.long_text, lengths, length, pairs is not None)
        return {"max_length": length, "max_length_why": why, "long_text": mode, "long_text_why": mode_why}

    def encode_split(self, tokenizer, frame: pd.DataFrame, spec: dict, plan: dict, split: str) -> Encoded:
        texts, length = frame["text"].tolist(), plan["max_length"]
        pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
        encoded, lengths = encode(tokenizer, texts, length, pairs)
        targets, row_ids = self.encode(frame["label"], spec), frame["row_id"].tolist()
        stats = {**length_stats(lengths, length), "unknown_only": int(self.unknown_only(tokenizer, frame).sum())}
        if plan["long_text"] != "chunk":
            return Encoded({**encoded, "labels": targets, "row_id": row_ids}, lengths, stats)
        # One row per window; `document` says which text each came from.
        encoded, documents = encode_windows(tokenizer, texts, length)
        columns = {
            **encoded,
            "labels": [targets[d] for d in documents],
            "row_id": [row_ids[d] for d in documents],
            "document": documents,
        }
        stats["chunked"] = {"documents_chunked": int((lengths > length).sum()), "windows": len(documents), "documents": len(frame)}
        return Encoded(columns, lengths, stats)

    # ---- evaluation -----------------------------------------------------------------------------------
    def run_features(self, model, tokenizer, features, frame: pd.DataFrame, spec: dict, runner: Runner, settings: dict | None = None):
        from task_types.inference import INPUT_FEATURES, per_document, predict_logits

        columns = {k: features[k] for k in INPUT_FEATURES if k in features.column_names}
        logits = predict_logits(model, tokenizer, columns, runner)
        labels = features["labels"]
        if "document" in features.column_names:  # chunked texts: one prediction per text, from all its windows
            documents = np.asarray(features["document"])
            logits = per_document(logits, documents, self.window_aggregate)
            labels = [labels[i] for i in np.unique(documents, return_index=True)[1]]
        return self.decode_truth(labels, spec), logits

    # ---- baseline --------------------------------------------------------------------------------------
    def baseline(self, parts: dict[str, pd.DataFrame], spec: dict) -> dict:
        return self.linear_baseline(tfidf_features(parts), parts, spec)

    def linear_baseline(self, features: dict, parts: dict[str, pd.DataFrame], spec: dict) -> dict:
        """This type's linear model on the TF-IDF features; its outputs per split."""
        raise NotImplementedError

    # ---- predict -----------------------------------------------------------------------------------------
    def predict_inputs(self, info: dict, given: dict[str, str | None]) -> dict[str, str]:
        inputs = {"text": given.get("text") or info.get("text_column") or "text"}
        if info["text_pair"]:
            inputs["text_pair"] = given.get("text_pair") or info.get("text_pair_column") or "text_pair"
        return inputs

    def run_rows(self, model, tokenizer, rows: pd.DataFrame, info: dict, runner: Runner, options: dict | None = None):
        chunk = info.get("long_text") == "chunk"  # windows as in training
        length = int(info.get("max_length") or tokenizer.model_max_length)
        pairs = rows["text_pair"].astype(str).tolist() if "text_pair" in rows else None
        logits = logits_for_texts(
            model, tokenizer, rows["text"].astype(str).tolist(), length, runner, pairs=pairs, chunk=chunk, how=self.window_aggregate
        )
        return self.outputs(logits, info["target"], info["decision"])

    # ---- explanations ------------------------------------------------------------------------------------
    def explain_targets(self, output, spec: dict, decision: dict) -> list[tuple[str, int]]:
        """(name, output index) of each prediction of one row to explain ("" when the row has one)."""
        raise NotImplementedError

    def explain_requests(self, tokenizer, rows: pd.DataFrame, outputs, info: dict) -> list:
        from task_types.explain import Request, fold_words

        texts = rows["text"].astype(str).tolist()
        pairs = rows["text_pair"].astype(str).tolist() if "text_pair" in rows else None
        length = int(info.get("max_length") or tokenizer.model_max_length)  # chunked texts: their first window is explained
        encoded = tokenizer(texts, pairs, truncation="longest_first" if pairs else True, max_length=length, return_offsets_mapping=True)
        width = len(info["target"].get("labels") or [None])
        requests = []
        for i in range(len(texts)):
            sequences: list[int] = []
            piece_words, words = fold_words(encoded, i, [texts[i], pairs[i]] if pairs else [texts[i]], sequences)
            columns = {k: encoded[k][i] for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded}
            for name, index in self.explain_targets(outputs[i], info["target"], info["decision"]):
                selector = np.zeros(width, dtype=np.float32)
                selector[index] = 1.0
                requests.append(Request(i, name, columns, selector, piece_words, words, {"target": index, "sequences": sequences}))
        return requests

    def faithfulness(self, model, tokenizer, rows: pd.DataFrame, attributions: list, info: dict, runner: Runner, seed: int) -> dict:
        """Each explained text re-read without its top 20% words, without as many random words, and with only its top
        words (words joined by spaces, which the tokenizer splits back into the same pieces)."""
        from task_types.explain import random_words, top_words

        if not attributions:
            return {}
        variants, keys = [], []
        for n, attribution in enumerate(attributions):
            words, scores, sequences = attribution.request.words, attribution.scores, attribution.request.extra["sequences"]
            top = top_words(scores)
            everything = range(len(words))
            kept = {
                "full": everything,
                "top_removed": [j for j in everything if j not in set(top)],
                "random_removed": [j for j in everything if j not in set(random_words(len(words), len(top), seed + n))],
                "top_only": top,
            }
            for kind, keep in kept.items():
                variants.append(
                    {side: " ".join(words[j] for j in keep if sequences[j] == i) or "." for i, side in enumerate(("text", "text_pair"))}
                )
                keys.append((n, kind))
        frame = pd.DataFrame(variants)[["text", "text_pair"] if "text_pair" in rows else ["text"]]
        outputs = self.run_rows(model, tokenizer, frame, info, runner)
        value = {key: self.target_value(outputs[i], attributions[key[0]].request.extra["target"], info) for i, key in enumerate(keys)}
        drops = {
            kind: [value[(n, "full")] - value[(n, kind)] for n in range(len(attributions))]
            for kind in ("top_removed", "random_removed", "top_only")
        }
        return {
            "explain_comprehensiveness": float(np.mean(drops["top_removed"])),
            "explain_random_comprehensiveness": float(np.mean(drops["random_removed"])),
            "explain_sufficiency": float(np.mean(drops["top_only"])),
        }

    def target_value(self, output, index: int, info: dict) -> float:
        """The explained prediction's value in one output row: the probability of its label (regression: its value in
        standard deviations of the target)."""
        return float(np.asarray(output)[index])

    # ---- card ---------------------------------------------------------------------------------------------
    def card_input_limits(self, facts: dict) -> list[str]:
        if facts.get("long_text") == "chunk":
            return [
                f"Texts longer than {facts['max_length']} tokens are read in overlapping windows whose outputs are joined (mean of "
                "logits; max for multi-label): a verdict spread thinly over a long text can be diluted."
            ]
        return [f"Texts longer than {facts['max_length']} tokens are truncated; only their start is read."]


__all__ = ["SequenceTask", "choose_long_text", "choose_max_length", "encode", "encode_windows", "length_stats", "scalar_metrics"]
