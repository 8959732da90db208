"""task=token_classification: a tag per word (named entities in IOB2/IOBES, or plain tags such as POS).

Canonical rows keep the frames' string columns: `text` is the JSON list of words and `label` the JSON
list of their tags, so the clean, split and cache steps stay generic. The word-level pieces (alignment
to the tokenizer's pieces, windows, the BIO-valid decode, spans) are pure helpers in tagging.py; conll.py reads
word-per-line files; inference.py runs the model over windows and merges them back per word.

Metrics are word-level (one tag per word, read from its first piece): token accuracy and macro-F1 over
the tags; for BIO-style schemes the strict entity-level precision, recall and F1 of seqeval in the
detected scheme (an `I-X` that starts a chunk is no entity), per entity type as well.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from schemas.errors import DataError
from task_types.base import Encoded, Fields, Gate, Options, Runner, TaskType, as_text, is_nested, pyplot
from task_types.classification import plot_confusion, softmax
from task_types.token_classification.tagging import (
    IGNORE,
    IOB2,
    PLAIN,
    constrained_decode,
    detect_scheme,
    encode_sentences,
    entity_spans,
    invalid_positions,
    is_bio,
    malformed_tags,
    repair_case,
    repair_tags,
    window_labels,
)

MAX_LENGTH_DEFAULT = 128  # tokens per window when train.max_length=auto (sentences are windowed, never cut)


class TokenClassificationData(Options):
    """task=token_classification's keys in the data section."""

    token_column: int = Field(0, ge=0, description="token_classification, data.format=conll: position of the token (word) column")
    tag_column: int | None = Field(
        None,
        description="token_classification, CoNLL: position of the tag column; default: the last column (conll), 3 = UPOS (conllu; 4 = XPOS)",
    )
    tag_repair: Literal["quarantine", "fix"] = Field(
        "quarantine",
        description="token_classification, BIO-style tags: an I-X that does not follow B-X/I-X quarantines its sentence "
        "(invalid_tag_sequence), as does a malformed tag such as B- or b-per (malformed_tag); fix turns the I-X into B-X and "
        "upper-cases a lower-case prefix (counted in the data report)",
    )


DECODING = (
    "constrained decode: the most probable tag sequence that is valid in the scheme (Viterbi over the "
    "per-word probabilities with forbidden transitions such as O -> I-X removed); never an invalid BIO sequence"
)
WORD_RULE = (
    "raw text is split on whitespace, and punctuation at either end of a chunk (. , ; : ! ? quotes brackets) "
    "is a word of its own; @user, #tag, URLs and inner hyphens or apostrophes stay one word"
)


def parse_list(value) -> list[str] | None:
    """A JSON list of strings (numbers read as text); None when the cell is not such a list."""
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None
    if not isinstance(parsed, list) or any(v is None or isinstance(v, (list, dict)) for v in parsed):
        return None
    return [str(v) for v in parsed]


def entity_scores(true_tags: list[list[str]], pred_tags: list[list[str]], scheme: str, strict: bool = True) -> dict:
    """Entity-level micro precision/recall/F1 and a per-type report (seqeval; strict mode in the scheme by default,
    conlleval's lenient chunking otherwise)."""
    from seqeval.metrics import classification_report, precision_score, recall_score
    from seqeval.metrics import f1_score as seq_f1
    from seqeval.scheme import IOB2 as SEQ_IOB2
    from seqeval.scheme import IOBES as SEQ_IOBES

    options = {"mode": "strict", "scheme": SEQ_IOB2 if scheme == IOB2 else SEQ_IOBES} if strict else {}
    if not any(t != "O" for tags in true_tags + pred_tags for t in tags):
        return {"entity_precision": 0.0, "entity_recall": 0.0, "entity_f1": 0.0, "per_type": {}}
    report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0, **options)
    per_type = {
        kind: {"precision": float(r["precision"]), "recall": float(r["recall"]), "f1": float(r["f1-score"]), "support": int(r["support"])}
        for kind, r in sorted(report.items())
        if not kind.endswith(" avg")
    }
    return {
        "entity_precision": float(precision_score(true_tags, pred_tags, zero_division=0, **options)),
        "entity_recall": float(recall_score(true_tags, pred_tags, zero_division=0, **options)),
        "entity_f1": float(seq_f1(true_tags, pred_tags, zero_division=0, **options)),
        "per_type": per_type,
    }


def word_metrics(true_ids: list[np.ndarray], pred_ids: list[np.ndarray], labels: list[str], scheme: str, tables: bool = True) -> dict:
    """Token accuracy and macro-F1 over the tags present; strict entity metrics for BIO schemes; per type
    (BIO) or per tag (plain) under `per_class`, and the tag confusion matrix for plain tags."""
    from sklearn.metrics import confusion_matrix, f1_score

    y_true = np.concatenate([np.asarray(t, dtype=np.int64) for t in true_ids]) if true_ids else np.zeros(0, dtype=np.int64)
    y_pred = np.concatenate([np.asarray(p, dtype=np.int64) for p in pred_ids]) if pred_ids else np.zeros(0, dtype=np.int64)
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    metrics = {
        "token_accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "token_f1_macro": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)) if len(y_true) else 0.0,
    }
    if is_bio(scheme):
        name = lambda ids: [labels[i] if 0 <= i < len(labels) else "O" for i in ids]  # noqa: E731
        scores = entity_scores([name(t) for t in true_ids], [name(p) for p in pred_ids], scheme)
        per_type = scores.pop("per_type")
        metrics.update(scores)
        if tables:
            metrics["per_class"] = per_type
    elif tables:
        ids = list(range(len(labels)))
        matrix = confusion_matrix(y_true, y_pred, labels=ids) if len(y_true) else np.zeros((len(ids), len(ids)), dtype=int)
        per_tag = {}
        for i, label in enumerate(labels):
            tp, support, predicted = int(matrix[i, i]), int(matrix[i].sum()), int(matrix[:, i].sum())
            p, r = (tp / predicted if predicted else 0.0), (tp / support if support else 0.0)
            per_tag[label] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": support}
        metrics["per_class"] = per_tag
        metrics["confusion_matrix"] = matrix.tolist()
    return metrics


class TokenClassification(TaskType):
    name = "token_classification"
    title = "token classification (one tag per word)"
    help = "a tag per word (NER in IOB2/IOBES, or POS), from CoNLL/CoNLL-U files or list columns of tokens and tags"
    problem_type = "single_label_classification"
    compare_on = "entity_f1"
    headline = ("entity_f1", "entity_precision", "entity_recall", "token_accuracy", "token_f1_macro")
    metric_names = headline
    training_metric_names = headline
    reasons = (
        "malformed_token_list",
        "empty_sentence",
        "empty_token",
        "empty_tag",
        "token_tag_mismatch",
        "label_not_in_labels",
        "malformed_tag",
        "invalid_tag_sequence",
    )
    auto_model = "AutoModelForTokenClassification"
    formats = ("conll", "conllu")
    extensions = {".conll": "conll", ".conllu": "conllu"}
    feature_columns = ("row_id", "word_ids")
    onnx_outputs = {"logits": {0: "batch", 1: "sequence"}}  # a tag per piece
    baseline_name = "most-frequent-tag baseline"
    options = {"data": TokenClassificationData}

    def for_target(self, spec: dict) -> TaskType:
        return PLAIN_TAGGING if spec.get("scheme") == PLAIN else self

    def default_gates(self, registry) -> list[Gate]:
        return [Gate("entity_f1", 0.3, "registry.gates"), Gate("token_accuracy", 0.8, "registry.gates")]

    def check_config(self, cfg) -> None:
        super().check_config(cfg)
        if cfg.data.text_pair_column is not None:
            raise ValueError("data.text_pair_column is for sequence-level tasks: task=token_classification tags the words of one text")
        if cfg.data.split_column is not None and cfg.data.format in ("conll", "conllu"):
            raise ValueError(
                "data.split_column needs a table: CoNLL files have no split column (give each split its own file: "
                "data.path={train: a.conll, validation: b.conll, test: c.conll})"
            )

    # ---- ingest ------------------------------------------------------------------------------------
    def read_source(self, path: Path, fmt: str, data, encoding: str, errors: str) -> pd.DataFrame:
        from task_types.token_classification.conll import read_conll

        return read_conll(path, fmt, encoding, errors, data.token_column, data.tag_column)

    def format_fields(self, fmt: str, data) -> Fields:
        return Fields(["text"], "data.text_column", ["label"], "data.label_column")

    def nested_fields(self) -> frozenset[str]:
        return frozenset({"text", "label"})

    def raw_text(self, cells: list[pd.Series], source_name: str) -> pd.Series:
        """A list of words per row (JSONL/Parquet lists) as JSON text; text cells as they are."""
        words = cells[0].map(lambda v: json.dumps([str(x) for x in v], ensure_ascii=False) if is_nested(v) else v)
        return as_text(words)

    def raw_label(self, frame: pd.DataFrame, columns: list[str], data, source_name: str) -> pd.Series:
        """A list of tags per row as JSON text; text cells (JSON lists in CSV) as they are."""
        return as_text(frame[columns[0]].map(lambda v: json.dumps([str(x) for x in v], ensure_ascii=False) if is_nested(v) else v))

    # ---- clean -------------------------------------------------------------------------------------
    def clean_rows(self, frame: pd.DataFrame, data) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
        """Words and tags judged together, on the raw JSON word lists (whitespace normalisation would change them); the
        canonical word list is the text."""
        words, tags, reason = self.validate_rows(frame["raw_text"].astype(object), frame["label"].astype(object), data)
        return pd.DataFrame({"text": words}, index=frame.index), tags, reason

    def clean_options(self, data) -> dict:
        return {"tag_repair": data.tag_repair}

    def validate_rows(self, texts: pd.Series, labels: pd.Series, data) -> tuple[pd.Series, pd.Series, pd.Series]:
        """(canonical JSON word lists, canonical JSON tag lists or None, quarantine reason or None) per row."""
        words_out = pd.Series([None] * len(texts), index=texts.index, dtype=object)
        tags_out = pd.Series([None] * len(texts), index=texts.index, dtype=object)
        reason = pd.Series([None] * len(texts), index=texts.index, dtype=object)
        parsed = {}
        for index, text, label in zip(texts.index, texts, labels):
            words, tags = parse_list(text), parse_list(label)
            if words is None or tags is None:
                reason[index] = "malformed_token_list"
                continue
            words = [unicodedata.normalize("NFC", w).strip() for w in words]
            tags = [t.strip() for t in tags]
            if not words:
                reason[index] = "empty_sentence"
            elif len(words) != len(tags):
                reason[index] = "token_tag_mismatch"
            elif not all(words):
                reason[index] = "empty_token"
            elif not all(tags):
                reason[index] = "empty_tag"
            elif data.labels is not None and not set(tags) <= set(data.labels):
                reason[index] = "label_not_in_labels"
            else:
                parsed[index] = (words, tags)
        scheme = detect_scheme([tags for _, tags in parsed.values()] + ([data.labels] if data.labels else []))
        for index, (words, tags) in parsed.items():
            if malformed_tags(tags, scheme):
                if data.tag_repair == "fix":
                    tags = repair_case(tags)
                if malformed_tags(tags, scheme):
                    reason[index] = "malformed_tag"
                    continue
            if invalid_positions(tags, scheme):
                if data.tag_repair != "fix":
                    reason[index] = "invalid_tag_sequence"
                    continue
                tags, _ = repair_tags(tags, scheme)
            words_out[index] = json.dumps(words, ensure_ascii=False)
            tags_out[index] = json.dumps(tags, ensure_ascii=False)
        return words_out, tags_out, reason

    def clean_summary(self, raw: pd.DataFrame, kept: pd.DataFrame) -> dict:
        """The detected scheme and how many tags data.tag_repair=fix changed (kept rows against their raw tags),
        after checking the kept rows' word/tag contract (schemas.data.TaggedFrame)."""
        from schemas.data import TaggedFrame

        TaggedFrame.validate(kept)
        tags = [json.loads(v) for v in kept["label"]]
        scheme = detect_scheme(tags)
        original = dict(zip(raw["row_id"], raw["label"]))
        repaired = sentences = 0
        for row_id, fixed in zip(kept["row_id"], tags):
            before = [t.strip() for t in parse_list(original[row_id]) or []]
            changed = sum(a != b for a, b in zip(before, fixed))
            repaired += changed
            sentences += changed > 0
        return {"tag_scheme": scheme, "tags_repaired": repaired, "sentences_repaired": sentences}

    def check_usable(self, labels: pd.Series, data) -> None:
        found = sorted({t for v in labels for t in json.loads(v)})
        if len(found) < 2:
            raise DataError(f"every word has the tag {found}: token classification needs at least two tags")
        if data.labels is not None:
            missing = [t for t in data.labels if t not in found]
            if missing:
                raise DataError(f"data.labels names {missing} but no clean sentence has them; tags found: {found}")

    # ---- split -----------------------------------------------------------------------------------------
    def strata(self, labels: pd.Series) -> pd.Series:
        # Like multi-label: each sentence is keyed by its rarest tag other than O (sentences of O alone together).
        sets = [set(json.loads(v)) - {"O"} for v in labels]
        counts: dict[str, int] = {}
        for tags in sets:
            for tag in tags:
                counts[tag] = counts.get(tag, 0) + 1
        return pd.Series([min(tags, key=lambda t: (counts[t], t)) if tags else "" for tags in sets], index=labels.index)

    def target_spec(self, labels: pd.Series, train_labels: pd.Series, data) -> dict:
        tags = [json.loads(v) for v in labels]
        order = list(data.labels) if data.labels else sorted({t for ts in tags for t in ts})
        seen = {t for v in train_labels for t in json.loads(v)}
        scheme = detect_scheme(tags)
        return {
            "labels": order,
            "scheme": scheme,
            "no_train_positives": [t for t in order if t not in seen],
            "entity_types": sorted({t[2:] for t in order if t != "O"}) if is_bio(scheme) else [],
        }

    def target_summary(self, labels: pd.Series, spec: dict) -> dict:
        counts = {t: 0 for t in spec["labels"]}
        words = 0
        for value in labels:
            for tag in json.loads(value):
                counts[tag] = counts.get(tag, 0) + 1
                words += 1
        return {"per_class": counts, "words": words}

    def encode(self, labels: pd.Series, spec: dict) -> list:
        index = {t: i for i, t in enumerate(spec["labels"])}
        return [[index.get(t, -1) for t in json.loads(v)] for v in labels]

    def truth_from_labels(self, labels: pd.Series, spec: dict) -> list[np.ndarray]:
        return [np.asarray(ids, dtype=np.int64) for ids in self.encode(labels, spec)]

    # ---- tokenize and model ----------------------------------------------------------------------------
    def plan_encoding(self, tokenizer, train: pd.DataFrame, train_cfg) -> dict:
        length = MAX_LENGTH_DEFAULT if train_cfg.max_length == "auto" else int(train_cfg.max_length)
        return {
            "max_length": length,
            "max_length_why": f"train.max_length={train_cfg.max_length}: {length} tokens per window",
            "long_text": "windows",
            "long_text_why": "sentences in overlapping windows",
        }

    def encode_split(self, tokenizer, frame: pd.DataFrame, spec: dict, plan: dict, split: str) -> Encoded:
        from task_types.sequence import length_stats

        columns, lengths, stats = self.tokenize(tokenizer, frame, spec, plan["max_length"])
        return Encoded(columns, lengths, {**length_stats(lengths, plan["max_length"]), **stats})

    def tokenize(self, tokenizer, frame: pd.DataFrame, spec: dict, max_length: int) -> tuple[dict, np.ndarray, dict]:
        """(Arrow columns, one row per window; each sentence's full length in tokens; length figures): words are
        encoded with is_split_into_words, long sentences cut into overlapping windows, nothing truncated."""
        sentences = [json.loads(v) for v in frame["text"]]
        tag_ids = self.encode(frame["label"], spec)
        windows, lengths = encode_sentences(tokenizer, sentences, max_length)
        row_ids = frame["row_id"].tolist()
        columns = {"input_ids": [w.input_ids for w in windows], "attention_mask": [[1] * len(w.input_ids) for w in windows]}
        if "token_type_ids" in tokenizer.model_input_names:
            columns["token_type_ids"] = [[0] * len(w.input_ids) for w in windows]
        columns.update(
            {
                "labels": [window_labels(w, tag_ids[w.row]) for w in windows],
                "word_ids": [w.word_ids for w in windows],
                "row_id": [row_ids[w.row] for w in windows],
            }
        )
        windowed = int((lengths > max_length).sum())
        return columns, lengths, {"truncated": 0, "fraction_truncated": 0.0, "windowed": windowed, "windows": len(windows)}

    def head_config(self, spec: dict) -> dict:
        labels = spec["labels"]
        return {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}

    def collator(self, tokenizer, pad_to_multiple_of: int | None = None):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE, pad_to_multiple_of=pad_to_multiple_of)

    def outputs(self, logits, spec: dict, decision: dict | None = None) -> list[np.ndarray]:
        """Per sentence, the (words x tags) probabilities from its merged per-word logits."""
        return [softmax(np.asarray(sentence).reshape(-1, len(spec["labels"]))) for sentence in logits]

    def training_metrics(self, logits: np.ndarray, label_ids: np.ndarray, spec: dict) -> dict:
        # One window = one sequence of its owned words; the scheme-valid decode, as in evaluation.
        logits, label_ids = np.asarray(logits), np.asarray(label_ids)
        truth, predicted = [], []
        for window_logits, labels in zip(logits, label_ids):
            owned = labels != IGNORE
            truth.append(labels[owned])
            predicted.append(constrained_decode(softmax(window_logits[owned]), spec["labels"], spec["scheme"]))
        metrics = word_metrics(truth, predicted, spec["labels"], spec["scheme"], tables=False)
        return {name: metrics.get(name, 0.0) for name in self.training_metric_names}

    # ---- evaluation and prediction ------------------------------------------------------------------
    def run_features(self, model, tokenizer, features, frame: pd.DataFrame, spec: dict, runner: Runner, settings: dict | None = None):
        """One row per window: outputs per word, merged back per sentence."""
        from task_types.token_classification.inference import scored_split

        return scored_split(model, tokenizer, features, spec, runner)

    def decode(self, outputs: list[np.ndarray], spec: dict) -> list[np.ndarray]:
        return [constrained_decode(p, spec["labels"], spec["scheme"]) for p in outputs]

    def baseline(self, parts: dict[str, pd.DataFrame], spec: dict) -> dict[str, list[np.ndarray]]:
        """Each word form tagged with the tag it carries most often in training ("O", else the commonest tag, for
        unseen words); the scheme-valid decode then applies as for the model."""
        from collections import Counter, defaultdict

        counts: dict[str, Counter] = defaultdict(Counter)
        overall: Counter = Counter()
        for words, tags in zip(parts["train"]["text"], parts["train"]["label"]):
            for word, tag in zip(json.loads(words), json.loads(tags)):
                counts[word][tag] += 1
                overall[tag] += 1
        fallback = "O" if "O" in spec["labels"] else overall.most_common(1)[0][0]
        best = {word: c.most_common(1)[0][0] for word, c in counts.items()}
        index = {tag: i for i, tag in enumerate(spec["labels"])}
        out = {}
        for name, part in parts.items():
            sentences = []
            for words in part["text"]:
                ids = [index[best.get(w, fallback)] for w in json.loads(words)]
                sentences.append(np.eye(len(index), dtype=np.float32)[ids] if ids else np.zeros((0, len(index)), dtype=np.float32))
            out[name] = sentences
        return out

    def fit_decision(self, truth, outputs, spec: dict) -> dict:
        return {"decoding": DECODING if is_bio(spec["scheme"]) else "the most probable tag of each word"}

    def score(self, truth, outputs, spec: dict, decision: dict) -> dict:
        return word_metrics(list(truth), self.decode(list(outputs), spec), spec["labels"], spec["scheme"])

    def evaluate(self, truth, outputs, spec: dict, decision: dict, split: str, folder: Path) -> dict:
        metrics = self.score(truth, outputs, spec, decision)
        kind = "type" if is_bio(spec["scheme"]) else "tag"
        with open(folder / f"per_{kind}_{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([kind, "precision", "recall", "f1", "support"])
            for name, row in metrics["per_class"].items():
                writer.writerow([name, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", row["support"]])
        plot_type_f1(metrics["per_class"], split, folder / f"per_{kind}_f1_{split}.png", "entity" if kind == "type" else "tag")
        if "confusion_matrix" in metrics:
            plot_confusion(
                metrics["confusion_matrix"], spec["labels"], f"{split} tag confusion", folder / f"confusion_{split}.png", normalize=True
            )
        return metrics

    def predict_inputs(self, info: dict, given: dict[str, str | None]) -> dict[str, str]:
        return {"text": given.get("text") or info.get("text_column") or "text"}

    def input_options(self) -> dict[str, str]:
        return {"text": "--text-column"}

    def run_rows(self, model, tokenizer, rows: pd.DataFrame, info: dict, runner: Runner, options: dict | None = None) -> list[dict]:
        from task_types.token_classification.inference import tag_outputs

        length = int((options or {}).get("max_length") or info.get("max_length") or MAX_LENGTH_DEFAULT)
        return tag_outputs(
            model, tokenizer, rows["text"].tolist(), length, runner, pre_tokenized=bool((options or {}).get("pre_tokenized"))
        )

    def score_rows(self, model, tokenizer, frame: pd.DataFrame, info: dict, runner: Runner):
        """Canonical rows' words (JSON lists), tagged by the registered model word by word."""
        from task_types.token_classification.inference import word_probabilities

        length = int(info.get("max_length") or MAX_LENGTH_DEFAULT)
        outputs = word_probabilities(model, tokenizer, [json.loads(v) for v in frame["text"]], length, runner)
        return self.truth_from_labels(frame["label"], info["target"]), outputs

    explain_batchable = False

    def explain_requests(self, tokenizer, rows: pd.DataFrame, outputs: list[dict], info: dict) -> list:
        """Per predicted entity (BIO tags; one per row for plain tags): the logits of its words' tags at their first
        pieces. Words past the model's window are not explained (their window would be another input)."""
        from task_types.explain import Request
        from task_types.token_classification.tagging import entity_chunks

        spec, requests = info["target"], []
        length = int(info.get("max_length") or MAX_LENGTH_DEFAULT)
        width = len(spec["labels"])
        for i, row in enumerate(outputs):
            if not row["words"]:
                continue
            encoded = tokenizer([row["words"]], is_split_into_words=True, truncation=True, max_length=length)
            word_ids = encoded.word_ids(0)
            first = {}
            for position, word in enumerate(word_ids):
                if word is not None:
                    first.setdefault(word, position)
            ids = constrained_decode(row["proba"], spec["labels"], spec["scheme"])
            tags = [spec["labels"][j] for j in ids]
            spans = (
                [(f"{kind}: {' '.join(row['words'][a:b])}", a, b) for kind, a, b in entity_chunks(tags, spec["scheme"])]
                if is_bio(spec["scheme"])
                else [("", 0, len(row["words"]))]
            )
            columns = {k: encoded[k][0] for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded}
            pieces = [-1 if w is None else w for w in word_ids]
            for name, a, b in spans:
                selector = np.zeros((len(word_ids), width), dtype=np.float32)
                for word in range(a, b):
                    if word in first:
                        selector[first[word], ids[word]] = 1.0
                if selector.any():
                    requests.append(Request(i, name, columns, selector.reshape(-1), pieces, list(row["words"])))
        return requests

    def explain_output(self, model_output):
        return model_output.logits.reshape(model_output.logits.shape[0], -1)

    def pick_explained(self, truth, outputs, spec: dict, decision: dict, n: int) -> tuple[list[int], list[int]]:
        predicted = self.decode(list(outputs), spec)
        confidence = [float(np.mean(np.max(p, axis=1))) if len(p) else 0.0 for p in outputs]
        order = sorted(range(len(outputs)), key=lambda i: -confidence[i])
        wrong = [bool((np.asarray(t) != np.asarray(p)).any()) for t, p in zip(truth, predicted)]
        return [i for i in order if wrong[i]][:n], [i for i in order if not wrong[i]][:n]

    def describe(self, output, spec: dict, decision: dict) -> str:
        ids = constrained_decode(np.asarray(output), spec["labels"], spec["scheme"]) if len(output) else []
        return " ".join(spec["labels"][i] for i in ids)

    def predict_columns(self, outputs: list[dict], spec: dict, decision: dict, options: dict | None = None) -> dict[str, list]:
        """outputs: per row {"text", "words", "starts", "ends", "proba"} (words' character offsets into text)."""
        labels, scheme = spec["labels"], spec["scheme"]
        columns = {"words": [], "tags": [], **({"entities": []} if is_bio(scheme) else {})}
        for row in outputs:
            ids = constrained_decode(row["proba"], labels, scheme) if len(row["words"]) else np.zeros(0, dtype=np.int64)
            tags = [labels[i] for i in ids]
            columns["words"].append(json.dumps(row["words"], ensure_ascii=False))
            columns["tags"].append(json.dumps(tags, ensure_ascii=False))
            if is_bio(scheme):
                scores = [float(row["proba"][w, i]) for w, i in enumerate(ids)]
                columns["entities"].append(
                    json.dumps(entity_spans(row["text"], row["starts"], row["ends"], tags, scores, scheme), ensure_ascii=False)
                )
        return columns

    def output_schema(self, spec: dict, options: dict | None = None) -> list[tuple[str, str]]:
        return [("words", "string"), ("tags", "string"), *([("entities", "string")] if is_bio(spec.get("scheme", PLAIN)) else [])]

    def report_facts(self, clean, split, tokens) -> dict:
        """The detected tag scheme, tags repaired, words per split and sentences that needed windows."""
        return {
            "tagging": {
                "scheme": split.target["scheme"],
                "entity_types": split.target.get("entity_types", []),
                "tags_repaired": clean.task_facts.get("tags_repaired", 0),
                "sentences_repaired": clean.task_facts.get("sentences_repaired", 0),
                "words": {name: part.get("words", 0) for name, part in split.splits.items()},
                "sentences_windowed": {name: s.get("windowed", 0) for name, s in tokens.lengths.items()},
                "windows": {name: s.get("windows", 0) for name, s in tokens.lengths.items()},
            }
        }

    def report_lines(self, report: dict) -> list[str]:
        t = report["tagging"]
        return [
            "",
            f"Tag scheme **{t['scheme']}**"
            + (f" over entity types {', '.join(t['entity_types'])}" if t["entity_types"] else " (plain tags)")
            + f"; tags repaired (data.tag_repair=fix): {t['tags_repaired']} in {t['sentences_repaired']} sentences; words per split "
            + ", ".join(f"{k} {v}" for k, v in t["words"].items())
            + "; sentences longer than max_length, read in overlapping windows "
            "(nothing truncated): " + ", ".join(f"{k} {v}" for k, v in t["sentences_windowed"].items()) + ".",
        ]

    def card_section(self, spec: dict, decision: dict) -> str:
        labels, scheme = spec["labels"], spec["scheme"]
        lines = [
            f"- Task: token classification, one tag per word; scheme **{scheme}**"
            + (
                f", entity types {', '.join(f'`{t}`' for t in spec.get('entity_types', []))}"
                if is_bio(scheme)
                else " (plain tags, no entities)"
            ),
            f"- Tag set ({len(labels)}): {', '.join(f'`{t}`' for t in labels)}",
            "- Alignment: the first piece of each word carries its tag (other pieces are ignored); each word gets exactly one tag",
            "- Long sentences: cut into overlapping windows (a quarter of the window overlaps); each word is read in the window "
            "where it has the most context, so nothing is cut off",
            f"- Decoding: {decision.get('decoding', DECODING if is_bio(scheme) else 'the most probable tag of each word')}",
            f"- Predict: {WORD_RULE}; pre-tokenized rows (lists of words) are used as given",
        ]
        if spec.get("no_train_positives"):
            lines.append(f"- Tags never seen in training: {', '.join(f'`{t}`' for t in spec['no_train_positives'])}")
        return "\n".join(lines)

    def card_metrics(self, metrics: dict) -> str:
        """Per entity type (BIO) or per tag (plain) F1 by split, for the model card."""
        splits = [s for s in metrics if metrics[s].get("per_class")]
        if not splits:
            return ""
        names = sorted({n for s in splits for n in metrics[s]["per_class"]})
        rows = "\n".join(
            f"| `{n}` | "
            + " | ".join(
                f"{metrics[s]['per_class'].get(n, {}).get('f1', float('nan')):.4f} "
                f"(n={metrics[s]['per_class'].get(n, {}).get('support', 0)})"
                for s in splits
            )
            + " |"
            for n in names
        )
        return f"\n### F1 per {'entity type' if 'entity_f1' in metrics[splits[0]] else 'tag'}\n| | {' | '.join(splits)} |\n|---|{'---|' * len(splits)}\n{rows}\n"

    def card_limits(self) -> list[str]:
        return [
            "With the default base model (all-MiniLM-L6-v2) the tokenizer is uncased: it lower-cases every word, so capitalisation, a strong "
            "cue for names, is invisible to the model.",
            "Raw text is split into words by a simple rule (see Predict above); text tokenized differently from the training "
            "data may be tagged worse: pass pre-tokenized words where you have them.",
        ]


class PlainTagging(TokenClassification):
    """token_classification on plain tags (e.g. POS): no entities, so token-level gates and comparison."""

    compare_on = "token_f1_macro"
    headline = ("token_accuracy", "token_f1_macro")

    def for_target(self, spec: dict) -> TaskType:
        return self

    def default_gates(self, registry) -> list[Gate]:
        return [Gate("token_accuracy", 0.8, "registry.gates"), Gate("token_f1_macro", 0.5, "registry.gates")]


PLAIN_TAGGING = PlainTagging()


def plot_type_f1(per_class: dict, split: str, path: Path, what: str) -> None:
    """Horizontal bars of F1 per entity type (or tag), with each bar's support."""
    plt = pyplot()
    names = list(per_class)
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.28 * max(len(names), 1)))
    ax.barh(range(len(names)), [per_class[n]["f1"] for n in names], color="tab:green")
    ax.set_yticks(range(len(names)), [f"{n} (n={per_class[n]['support']})" for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("strict entity F1" if what == "entity" else "F1")
    ax.set_title(f"{split}: F1 per {'entity type' if what == 'entity' else 'tag'}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
