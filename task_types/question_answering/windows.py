"""Question + context as model inputs, and answers back out of them (pure, the tokenizer given).

A context longer than the window is read in overlapping windows (`train.doc_stride` tokens shared by consecutive
windows, the question repeated in each); the fast tokenizer's offset mapping ties every context token to its
characters. In training a window that does not hold the whole answer points at the null position (the first token).
Post-processing takes the n best starts and ends of every window of a question, keeps spans inside the context no
longer than `eval.max_answer_length` tokens, maps them back to characters and picks the best over all windows; with
unanswerable questions (SQuAD 2.0) the null answer wins when its score beats the best span's by a threshold tuned
on validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_OFFSET = (-1, -1)  # a token outside the context (question, special tokens, padding)
N_BEST = 20


@dataclass
class Windows:
    """Model inputs of a batch of questions: one row per window, each with its question's index (`example`), its
    context offsets (NO_OFFSET outside the context) and, when answers are given, its start/end token positions."""

    columns: dict[str, list]
    example: list[int]
    offsets: list[list[tuple[int, int]]]
    lengths: np.ndarray  # each question's full length in tokens (question + context + specials)


def encode_windows(
    tokenizer, questions: list[str], contexts: list[str], max_length: int, stride: int, answers: list[dict] | None = None
) -> Windows:
    """Every question with its context cut into windows of max_length tokens (only the context is cut)."""
    pad_right = tokenizer.padding_side == "right"
    encoded = tokenizer(
        questions if pad_right else contexts,
        contexts if pad_right else questions,
        truncation="only_second" if pad_right else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    example = list(encoded.pop("overflow_to_sample_mapping"))
    mappings = encoded.pop("offset_mapping")
    context_side = 1 if pad_right else 0
    offsets = []
    starts, ends = [], []
    for i, mapping in enumerate(mappings):
        sequence = encoded.sequence_ids(i)
        own = [tuple(o) if s == context_side else NO_OFFSET for o, s in zip(mapping, sequence)]
        offsets.append(own)
        if answers is not None:
            start, end = answer_positions(own, answers[example[i]])
            starts.append(start)
            ends.append(end)
    columns = dict(encoded)
    if answers is not None:
        columns["start_positions"], columns["end_positions"] = starts, ends
    full = tokenizer(questions, contexts, truncation=False, verbose=False)["input_ids"]
    return Windows(columns, example, offsets, np.fromiter((len(ids) for ids in full), dtype=np.int64, count=len(questions)))


def answer_positions(offsets: list[tuple[int, int]], answers: dict) -> tuple[int, int]:
    """(start token, end token) of the first gold answer in one window; (0, 0), the null position, when the window
    does not hold all of it or the question has no answer."""
    if not answers["text"]:
        return 0, 0
    first, last = answers["answer_start"][0], answers["answer_start"][0] + len(answers["text"][0])
    inside = [i for i, (a, b) in enumerate(offsets) if (a, b) != NO_OFFSET]
    if not inside or offsets[inside[0]][0] > first or offsets[inside[-1]][1] < last:
        return 0, 0
    start = next(i for i in inside if offsets[i][1] > first)
    end = next(i for i in reversed(inside) if offsets[i][0] < last)
    return start, end


def answer_lost(windows: Windows, answers: list[dict]) -> int:
    """Questions with an answer that no window holds whole (training would see only the null position for them)."""
    held = [False] * len(answers)
    for i, row in enumerate(windows.example):
        if answers[row]["text"] and answer_positions(windows.offsets[i], answers[row]) != (0, 0):
            held[row] = True
    return sum(1 for row, a in enumerate(answers) if a["text"] and not held[row])


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


def best_spans(
    start_logits: list[np.ndarray],
    end_logits: list[np.ndarray],
    offsets: list[list[tuple[int, int]]],
    example: list[int],
    contexts: list[str],
    max_answer_length: int,
    n_best: int = N_BEST,
    top_k: int = 1,
) -> list[dict]:
    """Per question: {"text", "start", "end", "score" (the span's probability in its window), "logit" (start + end logit),
    "null_logit" (the best window's null score, lowest over windows), "candidates" (the top_k spans, best first)}.

    Spans must lie inside the context (a start before its end, both on context tokens) and be at most
    max_answer_length tokens long; a question with no valid span gets the empty answer."""
    found: list[dict] = [{"candidates": [], "null_logit": np.inf} for _ in contexts]
    for feature, row in enumerate(example):
        starts, ends = np.asarray(start_logits[feature], dtype=np.float64), np.asarray(end_logits[feature], dtype=np.float64)
        length = min(len(offsets[feature]), len(starts), len(ends))
        starts, ends, own = starts[:length], ends[:length], offsets[feature][:length]
        found[row]["null_logit"] = min(found[row]["null_logit"], float(starts[0] + ends[0]))
        p_start, p_end = _softmax(starts), _softmax(ends)
        for s in np.argsort(starts)[::-1][:n_best]:
            for e in np.argsort(ends)[::-1][:n_best]:
                if own[s] == NO_OFFSET or own[e] == NO_OFFSET or e < s or e - s + 1 > max_answer_length:
                    continue
                a, b = own[s][0], own[e][1]
                found[row]["candidates"].append(
                    {
                        "text": contexts[row][a:b],
                        "start": int(a),
                        "end": int(b),
                        "score": float(p_start[s] * p_end[e]),
                        "logit": float(starts[s] + ends[e]),
                    }
                )
    answers = []
    for item in found:
        ranked = sorted(item["candidates"], key=lambda c: -c["logit"])
        distinct, seen = [], set()
        for candidate in ranked:
            if (candidate["start"], candidate["end"]) not in seen:
                seen.add((candidate["start"], candidate["end"]))
                distinct.append(candidate)
            if len(distinct) >= max(top_k, 1):
                break
        best = distinct[0] if distinct else {"text": "", "start": -1, "end": -1, "score": 0.0, "logit": -np.inf}
        null = item["null_logit"] if np.isfinite(item["null_logit"]) else -np.inf
        answers.append({**best, "null_logit": null, "candidates": distinct})
    return answers


def apply_null_threshold(answers: list[dict], threshold: float | None) -> list[dict]:
    """With a threshold (SQuAD 2.0 data), the empty answer wherever the null score beats the best span's by more than it."""
    if threshold is None:
        return answers
    out = []
    for answer in answers:
        if answer["null_logit"] - answer["logit"] > threshold:
            answer = {**answer, "text": "", "start": -1, "end": -1, "score": 0.0}
        out.append(answer)
    return out


def tune_null_threshold(margins: np.ndarray, span_f1: np.ndarray, null_f1: np.ndarray) -> tuple[float, float]:
    """(threshold, mean F1 at it): answering empty wherever margin (null logit - best span logit) > threshold, the
    threshold that maximises F1 on validation (the official v2 script's best_f1 rule), found in one sorted sweep."""
    margins, span_f1, null_f1 = (np.asarray(v, dtype=np.float64) for v in (margins, span_f1, null_f1))
    if len(margins) == 0:
        return 0.0, 0.0
    order = np.argsort(margins)
    # threshold just below margins[order[k]]: the questions from k on answer empty, those before answer their span
    gain = null_f1[order] - span_f1[order]
    totals = span_f1.sum() + np.concatenate([np.cumsum(gain[::-1])[::-1], [0.0]])
    best = int(np.argmax(totals))
    threshold = float(margins[order[best]] - 1e-6) if best < len(margins) else float(margins[order[-1]] + 1e-6)
    return threshold, float(totals[best] / len(margins))
