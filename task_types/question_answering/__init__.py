"""task=question_answering: extractive question answering, the answer is a span of the context (SQuAD-style).

Canonical rows: `text` the question (whitespace-normalised), `text_pair` the context exactly as given (answer offsets
point into it), `label` the JSON of the gold answers {"text": [...], "answer_start": [...]} (none: unanswerable, as in
SQuAD 2.0). Questions on one context always share a split (group_key), so its other questions cannot leak the answer
region into the test. squad.py reads and scores, windows.py encodes and post-processes, overlap.py is the baseline.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from schemas.errors import DataError
from task_types.base import Encoded, Fields, Gate, Options, Runner, TaskType, as_text
from task_types.question_answering.squad import (
    answers_json,
    answers_of,
    check_answers,
    looks_like_squad,
    read_squad,
    squad_scores,
    token_f1,
)
from task_types.question_answering.windows import NO_OFFSET, apply_null_threshold, best_spans, tune_null_threshold
from task_types.text import normalise_texts

DEFAULT_WINDOW = 384  # tokens per window unless train.max_length is set: a SQuAD paragraph and its question fit in one
WORST_SHOWN = 50  # validation questions with the lowest F1 written to the evaluation artifact
SQUAD_NAMES = ("train-v1.1", "dev-v1.1", "train-v2.0", "dev-v2.0", "squad")


class QuestionAnsweringData(Options):
    """task=question_answering's keys in the data section."""

    question_column: str | int = Field("question", description="question_answering: the column holding the question")
    context_column: str | int = Field("context", description="question_answering: the column holding the passage the answer is taken from")
    answer_column: str | int = Field(
        "answers",
        description="question_answering: the gold answers, as Hugging Face's {text: [...], answer_start: [...]} (JSONL/Parquet), "
        "a list of {text, answer_start}, or one answer's text per row (then data.answer_start_column, or found by search)",
    )
    answer_start_column: str | int | None = Field(
        None, description="question_answering, one answer per row: the column with its character offset in the context (unset: searched)"
    )


class QuestionAnsweringTrain(Options):
    """task=question_answering's keys in the train section."""

    doc_stride: int = Field(128, ge=1, description="question_answering: tokens that consecutive windows over a long context share")


class QuestionAnsweringEval(Options):
    """task=question_answering's keys in the eval section."""

    max_answer_length: int = Field(30, ge=1, description="question_answering: the longest answer, in tokens, post-processing returns")


class QuestionAnswering(TaskType):
    name = "question_answering"
    title = "extractive question answering (the answer is a span of the context)"
    help = "the answer to a question as a span of its context (SQuAD JSON, or question/context/answers columns)"
    problem_type = ""
    compare_on = "f1"
    headline = ("f1", "exact_match")
    metric_names = ("f1", "exact_match", "has_answer_f1", "no_answer_f1", "no_answer_accuracy")
    training_metric_names = ("f1", "exact_match")
    reasons = ("malformed_answers", "answer_not_in_context", "ambiguous_answer_start", "answer_merged")
    baseline_name = "word-overlap baseline"
    auto_model = "AutoModelForQuestionAnswering"
    formats = ("squad",)
    feature_columns = ("row_id", "example", "offsets")
    onnx_outputs = {"start_logits": {0: "batch", 1: "sequence"}, "end_logits": {0: "batch", 1: "sequence"}}
    encoding_options = ("doc_stride",)
    group_name = "context"
    options = {"data": QuestionAnsweringData, "train": QuestionAnsweringTrain, "eval": QuestionAnsweringEval}

    def default_gates(self, registry) -> list[Gate]:
        return [Gate("f1", 0.3, "registry.gates"), Gate("exact_match", 0.15, "registry.gates")]

    def check_config(self, cfg) -> None:
        super().check_config(cfg)
        if cfg.data.text_pair_column is not None:
            raise ValueError("task=question_answering reads data.question_column and data.context_column, not data.text_pair_column")
        if cfg.data.labels is not None:
            raise ValueError("data.labels is a label set: task=question_answering answers with spans of the context")

    # ---- ingest --------------------------------------------------------------------------------------
    def fields(self, data) -> Fields:
        label = [str(data.answer_column)] + ([str(data.answer_start_column)] if data.answer_start_column is not None else [])
        return Fields(
            text=[str(data.question_column)],
            text_option="data.question_column",
            label=label,
            label_option="data.answer_column",
            text_pair=str(data.context_column),
            text_pair_option="data.context_column",
        )

    def format_fields(self, fmt: str, data) -> Fields:
        return Fields(["question"], "data.question_column", ["answers"], "data.answer_column", "context", "data.context_column")

    def detect_format(self, path: Path, fmt: str) -> str:
        return "squad" if fmt == "json" and looks_like_squad(path) else fmt

    def read_source(self, path: Path, fmt: str, data, encoding: str, errors: str) -> pd.DataFrame:
        return read_squad(path, encoding)

    def nested_fields(self) -> frozenset[str]:
        return frozenset({"label"})

    def raw_label(self, frame: pd.DataFrame, columns: list[str], data, source_name: str) -> pd.Series:
        """The gold answers as the target JSON; with data.answer_start_column one answer per row, text and start."""
        if len(columns) == 2:
            texts, starts = as_text(frame[columns[0]]), frame[columns[1]]
            return pd.Series(
                [None if t is None else answers_json([t], [None if pd.isna(s) else s]) for t, s in zip(texts, starts)],
                index=frame.index,
                dtype=object,
            )
        return frame[columns[0]].map(answers_of).astype(object)

    # ---- clean ----------------------------------------------------------------------------------------
    def clean_rows(self, frame: pd.DataFrame, data) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
        """The question normalised, the context as given (offsets point into it), each gold answer checked against it;
        rows asking the same question of the same context give their answers to the first (answer_merged)."""
        questions = normalise_texts(frame["raw_text"])
        contexts = frame["raw_text_pair"].astype(object)
        target = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        reason = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        first: dict[tuple[str, str], object] = {}
        for index, question, context, value in zip(frame.index, questions, contexts, frame["label"]):
            answers, why, _ = check_answers(str(value), str(context))
            if why is not None:
                reason[index] = why
                continue
            key = (question, context)
            if key not in first:
                first[key] = index
                target[index] = answers
                continue
            owner = target[first[key]]
            known = set(zip(owner["text"], owner["answer_start"]))
            new = [(t, s) for t, s in zip(answers["text"], answers["answer_start"]) if (t, s) not in known]
            owner["text"] += [t for t, _ in new]
            owner["answer_start"] += [s for _, s in new]
            reason[index] = "answer_merged" if new else "duplicate"
        canonical = target.map(lambda a: None if a is None else json.dumps(a, ensure_ascii=False))
        return pd.DataFrame({"text": questions, "text_pair": contexts}, index=frame.index), canonical, reason

    def clean_summary(self, raw: pd.DataFrame, kept: pd.DataFrame) -> dict:
        """Answers whose start was repaired (their text found once elsewhere in the context) and unanswerable questions."""
        contexts = dict(zip(raw["row_id"], raw["text_pair"]))
        labels = dict(zip(raw["row_id"], raw["label"]))
        repaired = sum(check_answers(str(labels[r]), str(contexts[r]))[2] for r in kept["row_id"])
        unanswerable = int(sum(not json.loads(v)["text"] for v in kept["label"]))
        return {"answers_repaired": int(repaired), "unanswerable": unanswerable}

    def check_usable(self, labels: pd.Series, data) -> None:
        if not any(json.loads(v)["text"] for v in labels):
            raise DataError("no clean question has an answer: extractive question answering needs answers to learn from")

    # ---- split -----------------------------------------------------------------------------------------
    def strata(self, labels: pd.Series) -> pd.Series:
        return pd.Series(["answerable" if json.loads(v)["text"] else "unanswerable" for v in labels], index=labels.index)

    def group_key(self, frame: pd.DataFrame) -> pd.Series:
        return frame["text_pair"]

    def target_spec(self, labels: pd.Series, train_labels: pd.Series, data) -> dict:
        return {"unanswerable": bool(any(not json.loads(v)["text"] for v in labels))}

    def target_summary(self, labels: pd.Series, spec: dict) -> dict:
        answerable = sum(1 for v in labels if json.loads(v)["text"])
        return {"per_class": {"answerable": answerable, "unanswerable": len(labels) - answerable}}

    def truth_from_labels(self, labels: pd.Series, spec: dict) -> list[list[str]]:
        return [json.loads(v)["text"] for v in labels]

    # ---- tokenize -----------------------------------------------------------------------------------------
    def plan_encoding(self, tokenizer, train: pd.DataFrame, train_cfg) -> dict:
        from task_types.sequence import MODEL_LENGTH_CAP, choose_max_length

        limit = min(tokenizer.model_max_length, MODEL_LENGTH_CAP)
        if "max_length" not in train_cfg.model_fields_set:
            length, why = (
                min(DEFAULT_WINDOW, limit),
                f"question_answering's window: {min(DEFAULT_WINDOW, limit)} tokens (set train.max_length to change)",
            )
        else:
            lengths = np.array(
                [len(ids) for ids in tokenizer(train["text"].tolist(), train["text_pair"].tolist(), verbose=False)["input_ids"]]
            )
            length, why = choose_max_length(train_cfg.max_length, lengths, limit)
        question_room = length // 4
        stride = max(1, min(train_cfg.doc_stride, (length - question_room) // 2))
        return {
            "max_length": length,
            "max_length_why": why,
            "long_text": "windows",
            "long_text_why": f"contexts longer than the window in overlapping windows sharing {stride} tokens (train.doc_stride)",
            "encoding": {"doc_stride": stride},
        }

    def encode_split(self, tokenizer, frame: pd.DataFrame, spec: dict, plan: dict, split: str) -> Encoded:
        from task_types.question_answering.windows import answer_lost, encode_windows
        from task_types.sequence import length_stats

        answers = [json.loads(v) for v in frame["label"]]
        windows = encode_windows(
            tokenizer, frame["text"].tolist(), frame["text_pair"].tolist(), plan["max_length"], plan["encoding"]["doc_stride"], answers
        )
        row_ids = frame["row_id"].tolist()
        columns = {
            **windows.columns,
            "example": windows.example,
            "offsets": [[list(o) for o in offsets] for offsets in windows.offsets],
            "row_id": [row_ids[e] for e in windows.example],
        }
        stats = length_stats(windows.lengths, plan["max_length"])
        counts = np.bincount(np.asarray(windows.example, dtype=np.int64), minlength=len(frame))
        stats.update(
            {
                "truncated": 0,
                "fraction_truncated": 0.0,
                "windowed": int((counts > 1).sum()),
                "windows": len(windows.example),
                "answers_lost": answer_lost(windows, answers),
            }
        )
        return Encoded(columns, windows.lengths, stats)

    # ---- model and training ----------------------------------------------------------------------------------
    def head_config(self, spec: dict) -> dict:
        return {}

    def trainer_mixins(self) -> tuple[type, ...]:
        return (InOrderEvaluation,)

    def training_metrics_fn(self, spec: dict, features, frame: pd.DataFrame):
        """Exact match and F1 of the best spans over all windows of each validation question (the examples, not only logits)."""
        offsets = [[tuple(o) for o in feature] for feature in features["offsets"]]
        example, contexts = features["example"], frame["text_pair"].tolist()
        golds = self.truth_from_labels(frame["label"], spec)

        def compute(prediction) -> dict:
            start, end = prediction.predictions[:2] if isinstance(prediction.predictions, tuple) else prediction.predictions
            answers = best_spans(list(start), list(end), offsets, example, contexts, 30)
            return squad_scores([a["text"] for a in answers], golds)

        return compute

    # ---- running the model -------------------------------------------------------------------------------------
    def logits(self, model, tokenizer, columns: dict, runner: Runner) -> tuple[list, list]:
        """Start and end logits of each window (trimmed to its length), in the order given."""
        from task_types.inference import forward_batches

        lengths = [len(ids) for ids in columns["input_ids"]]
        starts: list = [None] * len(lengths)
        ends: list = [None] * len(lengths)

        def read(output, idx):
            s, e = output.start_logits.float().cpu().numpy(), output.end_logits.float().cpu().numpy()
            for j, i in enumerate(idx):
                starts[i], ends[i] = s[j, : lengths[i]], e[j, : lengths[i]]

        forward_batches(model, tokenizer, columns, runner, read)
        return starts, ends

    def eval_settings(self, eval_cfg) -> dict:
        return {"max_answer_length": eval_cfg.max_answer_length}

    def run_features(self, model, tokenizer, features, frame: pd.DataFrame, spec: dict, runner: Runner, settings: dict | None = None):
        from task_types.inference import INPUT_FEATURES

        columns = {k: features[k] for k in INPUT_FEATURES if k in features.column_names}
        starts, ends = self.logits(model, tokenizer, columns, runner)
        offsets = [[tuple(o) for o in feature] for feature in features["offsets"]]
        answers = best_spans(
            starts, ends, offsets, features["example"], frame["text_pair"].tolist(), self.max_answer_length(settings or {})
        )
        for answer, question, context in zip(answers, frame["text"], frame["text_pair"]):
            answer.update({"question": question, "context": context})
        return self.truth_from_labels(frame["label"], spec), answers

    def max_answer_length(self, settings: dict) -> int:
        """eval.max_answer_length as evaluation used it (it travels with the model in its decision)."""
        return int(settings.get("max_answer_length") or QuestionAnsweringEval().max_answer_length)

    def outputs(self, raw, spec: dict, decision: dict | None = None):
        return apply_null_threshold(raw, (decision or {}).get("null_threshold"))

    def fit_decision(self, truth, outputs, spec: dict) -> dict:
        """For data with unanswerable questions: the null-score margin that maximises validation F1."""
        if not spec.get("unanswerable"):
            return {}
        margins = np.array([a["null_logit"] - a["logit"] if np.isfinite(a["logit"]) else np.inf for a in outputs])
        span_f1 = np.array([max(token_f1(a["text"], g) for g in (golds or [""])) for a, golds in zip(outputs, truth)])
        null_f1 = np.array([0.0 if golds else 1.0 for golds in truth])
        threshold, f1 = tune_null_threshold(np.where(np.isfinite(margins), margins, 1e9), span_f1, null_f1)
        return {
            "null_threshold": threshold,
            "rule": f"no answer where the null score beats the best span's by more than {threshold:.3f} (validation F1 {f1:.4f} at it)",
        }

    def score(self, truth, outputs, spec: dict, decision: dict) -> dict:
        answered = apply_null_threshold(list(outputs), decision.get("null_threshold"))
        return squad_scores([a["text"] for a in answered], list(truth))

    def evaluate(self, truth, outputs, spec: dict, decision: dict, split: str, folder: Path) -> dict:
        """score, plus the questions with the lowest F1 (question, context excerpt, gold, predicted) as a CSV."""
        metrics = self.score(truth, outputs, spec, decision)
        answered = apply_null_threshold(list(outputs), decision.get("null_threshold"))
        rows = []
        for answer, golds in zip(answered, truth):
            f1 = max(token_f1(answer["text"], g) for g in (golds or [""]))
            context, start = answer.get("context", ""), max(answer["start"], 0)
            rows.append((f1, answer.get("question", ""), excerpt(context, start), json.dumps(golds, ensure_ascii=False), answer["text"]))
        with open(folder / f"worst_questions_{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["f1", "question", "context_excerpt", "gold", "predicted"])
            for row in sorted(rows, key=lambda r: r[0])[:WORST_SHOWN]:
                writer.writerow([f"{row[0]:.3f}", *row[1:]])
        return metrics

    # ---- baseline -----------------------------------------------------------------------------------------------
    def baseline(self, parts: dict[str, pd.DataFrame], spec: dict) -> dict:
        from task_types.question_answering.overlap import idf_table, overlap_answer

        idf = idf_table(parts["train"]["text_pair"].tolist())
        out = {}
        for name, part in parts.items():
            answers = [overlap_answer(q, c, idf) for q, c in zip(part["text"], part["text_pair"])]
            out[name] = [{**a, "logit": a["score"], "null_logit": -np.inf} for a in answers]
        return out

    # ---- predict ---------------------------------------------------------------------------------------------------
    def predict_inputs(self, info: dict, given: dict[str, str | None]) -> dict[str, str]:
        return {
            "question": given.get("question") or info.get("question_column") or "question",
            "context": given.get("context") or info.get("context_column") or "context",
        }

    def input_options(self) -> dict[str, str]:
        return {"question": "--question-column", "context": "--context-column"}

    def predict_params(self) -> list[tuple[str, str, object]]:
        return [("top_k", "long", 1)]

    def trained_inputs(self, params: dict[str, str]) -> dict[str, str | None]:
        def one(key: str) -> str | None:
            value = params.get(key)
            return None if value in (None, "None") else value

        return {"question_column": one("data.question_column"), "context_column": one("data.context_column")}

    def rows_for_rescoring(self, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"question": frame["text"], "context": frame["text_pair"]}, index=frame.index)

    def run_rows(self, model, tokenizer, rows: pd.DataFrame, info: dict, runner: Runner, options: dict | None = None) -> list[dict]:
        """The best span of each row's context (and its top_k best), the null rule of the model applied."""
        from task_types.question_answering.windows import encode_windows

        options = options or {}
        questions = [" ".join(str(q).split()) for q in rows["question"]]  # as training normalised them
        contexts = [str(c) for c in rows["context"]]
        length = int(options.get("max_length") or info.get("max_length") or DEFAULT_WINDOW)
        stride = max(1, min(int(info.get("doc_stride") or QuestionAnsweringTrain().doc_stride), (length - length // 4) // 2))
        windows = encode_windows(tokenizer, questions, contexts, length, stride)
        starts, ends = self.logits(model, tokenizer, windows.columns, runner)
        answers = best_spans(
            starts,
            ends,
            windows.offsets,
            windows.example,
            contexts,
            self.max_answer_length(info["decision"]),
            top_k=int(options.get("top_k") or 1),
        )
        return apply_null_threshold(answers, info["decision"].get("null_threshold"))

    explain_batchable = False

    def explain_requests(self, tokenizer, rows: pd.DataFrame, outputs: list[dict], info: dict) -> list:
        """The answer's start and its end: their logits in the window that holds the answer, attributed to the words of
        the question and of the context."""
        from task_types.explain import Request, fold_words

        length = int(info.get("max_length") or DEFAULT_WINDOW)
        stride = max(1, min(int(info.get("doc_stride") or QuestionAnsweringTrain().doc_stride), (length - length // 4) // 2))
        requests = []
        for i, (question, context, answer) in enumerate(zip(rows["question"], rows["context"], outputs)):
            if not answer["text"]:
                continue
            question, context = " ".join(str(question).split()), str(context)
            encoded = tokenizer(
                question,
                context,
                truncation="only_second",
                max_length=length,
                stride=stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
            )
            for window in range(len(encoded["input_ids"])):
                owned = [
                    (j, o) for j, (o, seq) in enumerate(zip(encoded["offset_mapping"][window], encoded.sequence_ids(window))) if seq == 1
                ]
                start = next((j for j, (a, b) in owned if a <= answer["start"] < b), None)
                end = next((j for j, (a, b) in owned if a < answer["end"] <= b), None)
                if start is None or end is None:
                    continue
                pieces, words = fold_words(encoded, window, [question, context])
                columns = {k: encoded[k][window] for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded}
                n = len(columns["input_ids"])
                for name, position in (("start", start), ("end", n + end)):
                    selector = np.zeros(2 * n, dtype=np.float32)
                    selector[position] = 1.0
                    requests.append(Request(i, name, columns, selector, pieces, words))
                break
        return requests

    def explain_output(self, model_output):
        import torch

        return torch.cat([model_output.start_logits, model_output.end_logits], dim=-1)

    def describe(self, output, spec: dict, decision: dict) -> str:
        return output.get("text") or "(no answer)"

    def pick_explained(self, truth, outputs, spec: dict, decision: dict, n: int) -> tuple[list[int], list[int]]:
        answered = apply_null_threshold(list(outputs), decision.get("null_threshold"))
        f1 = [max(token_f1(a["text"], g) for g in (golds or [""])) for a, golds in zip(answered, truth)]
        order = sorted(range(len(answered)), key=lambda i: -answered[i]["score"])
        has = [bool(a["text"]) for a in answered]
        return [i for i in order if f1[i] < 1 and has[i]][:n], [i for i in order if f1[i] == 1 and has[i]][:n]

    def predict_columns(self, outputs: list[dict], spec: dict, decision: dict, options: dict | None = None) -> dict[str, list]:
        answered = [bool(a["text"]) for a in outputs]
        columns = {
            "answer": [a["text"] for a in outputs],
            "start": [a["start"] if ok else None for a, ok in zip(outputs, answered)],
            "end": [a["end"] if ok else None for a, ok in zip(outputs, answered)],
            "score": [round(a["score"], 6) for a in outputs],
        }
        if int((options or {}).get("top_k") or 1) > 1:
            columns["top_answers"] = [
                json.dumps([{k: c[k] for k in ("text", "start", "end", "score")} for c in a["candidates"]], ensure_ascii=False)
                for a in outputs
            ]
        return columns

    def output_schema(self, spec: dict, options: dict | None = None) -> list[tuple[str, str]]:
        schema = [("answer", "string"), ("start", "long"), ("end", "long"), ("score", "double")]
        return schema + ([("top_answers", "string")] if int((options or {}).get("top_k") or 1) > 1 else [])

    # ---- report and card -------------------------------------------------------------------------------------------
    def report_facts(self, clean, split, tokens) -> dict:
        return {
            "question_answering": {
                "doc_stride": tokens.encoding.get("doc_stride"),
                "answers_repaired": clean.task_facts.get("answers_repaired", 0),
                "unanswerable": clean.task_facts.get("unanswerable", 0),
                "questions_windowed": {name: s.get("windowed", 0) for name, s in tokens.lengths.items()},
                "windows": {name: s.get("windows", 0) for name, s in tokens.lengths.items()},
                "answers_lost": {name: s.get("answers_lost", 0) for name, s in tokens.lengths.items()},
            }
        }

    def report_lines(self, report: dict) -> list[str]:
        qa = report["question_answering"]
        return [
            "",
            f"Contexts longer than the window of {report['max_length']} tokens are read in overlapping windows sharing "
            f"{qa['doc_stride']} tokens; questions that needed several windows: "
            + ", ".join(f"{k} {v}" for k, v in qa["questions_windowed"].items())
            + "; windows: "
            + ", ".join(f"{k} {v}" for k, v in qa["windows"].items())
            + "; answers no window holds whole: "
            + ", ".join(f"{k} {v}" for k, v in qa["answers_lost"].items())
            + f". Answer starts repaired (the text found once elsewhere in its context): {qa['answers_repaired']}; "
            f"unanswerable questions kept: {qa['unanswerable']}.",
        ]

    def card_section(self, spec: dict, decision: dict) -> str:
        lines = [
            "- Task: extractive question answering: the answer is a span of the given context, with character offsets into it",
            "- Decoding: the 20 best starts and ends of every window of a context; spans inside the context and at most "
            "eval.max_answer_length tokens long; the best start + end score over all windows",
        ]
        if "null_threshold" in decision:
            lines.append(f"- Unanswerable questions: {decision['rule']}")
        return "\n".join(lines)

    def card_data_notes(self, facts: dict) -> list[str]:
        source = str(facts.get("data_source", "")).lower()
        if any(name in source for name in SQUAD_NAMES):
            return [
                "SQuAD (Rajpurkar et al., 2016; https://rajpurkar.github.io/SQuAD-explorer/) is licensed CC BY-SA 4.0: "
                "attribute it, and share adaptations of the data under the same licence"
            ]
        return []

    def card_input_limits(self, facts: dict) -> list[str]:
        return [
            f"Contexts longer than {facts['max_length']} tokens are read in overlapping windows; an answer split across a "
            "window edge is read from the window that holds it whole, if any"
        ]

    def card_limits(self) -> list[str]:
        return [
            "It answers with a span of the context it is given and nothing else: what the context does not say, it cannot answer.",
            "Trained on encyclopaedic paragraphs, it reads other styles (chat, legal text, tables) less well.",
        ]


class InOrderEvaluation:
    """Mixed into the Trainer: validation windows in their stored order. transformers 5 groups evaluation batches by
    length like training ones, and the answers are put back together from the windows by position."""

    def _get_eval_sampler(self, eval_dataset):
        import torch

        return torch.utils.data.SequentialSampler(eval_dataset) if eval_dataset is not None else None


def excerpt(context: str, start: int, width: int = 160) -> str:
    """The context around an offset, for a person reading the worst questions."""
    left = max(0, start - width // 2)
    return ("..." if left else "") + context[left : left + width] + ("..." if left + width < len(context) else "")


__all__ = ["NO_OFFSET", "QuestionAnswering"]
