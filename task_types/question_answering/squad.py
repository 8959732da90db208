"""SQuAD-style data and scoring: the JSON reader (v1.1 and v2.0), the answers of a row as one JSON target, their
validation against the context (with repair), and the official SQuAD normalisation, exact match and F1.

A row's target is the JSON object {"text": [...], "answer_start": [...]} of its gold answers (several are kept for
evaluation; none means unanswerable, as in SQuAD 2.0); answer_start is a character offset into the context as given.
"""

from __future__ import annotations

import collections
import json
import re
import string
from pathlib import Path

import pandas as pd

from schemas.errors import DataError

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


# ---- reading ------------------------------------------------------------------------------------------
def looks_like_squad(path: Path) -> bool:
    """Whether a .json file holds SQuAD's {"data": [{"paragraphs": [...]}]} (judged from its first bytes)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).decode("utf-8", errors="ignore")
    except OSError:
        return False
    return '"data"' in head and ('"paragraphs"' in head or '"title"' in head or '"version"' in head)


def read_squad(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """One row per question: id, title, question, context and answers (the target JSON), from SQuAD v1.1 or v2.0 JSON.

    An `is_impossible` question (v2.0) has no answers; its plausible answers are not gold answers."""
    try:
        document = json.loads(Path(path).read_text(encoding=encoding))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read '{Path(path).name}' as SQuAD JSON: {str(err).splitlines()[0][:200]}") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(f'\'{Path(path).name}\' is not SQuAD JSON: expected {{"data": [{{"paragraphs": [...]}}]}}; set data.format')
    rows = []
    for article in document["data"]:
        title = article.get("title") if isinstance(article, dict) else None
        for paragraph in (article.get("paragraphs") or []) if isinstance(article, dict) else []:
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            for qa in (paragraph.get("qas") or []) if isinstance(paragraph, dict) else []:
                if not isinstance(qa, dict):
                    continue
                answers = [] if qa.get("is_impossible") else (qa.get("answers") or [])
                rows.append(
                    {
                        "id": None if qa.get("id") is None else str(qa.get("id")),
                        "title": title,
                        "question": qa.get("question"),
                        "context": context,
                        "answers": answers_json(
                            [a.get("text") for a in answers if isinstance(a, dict)],
                            [a.get("answer_start") for a in answers if isinstance(a, dict)],
                        ),
                    }
                )
    if not rows:
        raise DataError(f"'{Path(path).name}' holds no question: expected data[].paragraphs[].qas[]")
    return pd.DataFrame(rows, columns=["id", "title", "question", "context", "answers"])


def answers_json(texts: list, starts: list) -> str:
    """The target: {"text": [...], "answer_start": [...]} with each value as given (judged by the clean step)."""
    return json.dumps({"text": list(texts), "answer_start": list(starts)}, ensure_ascii=False, default=str)


def answers_of(value) -> str | None:
    """A cell of answers as the target JSON: Hugging Face's {text: [...], answer_start: [...]}, a list of {text,
    answer_start}, their JSON text, or one answer's text (its start then found by search); None when missing."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith(("{", "[")):
            try:
                value = json.loads(stripped)
            except ValueError:
                return json.dumps({"malformed": value})
        else:
            return answers_json([value], [None])
    if isinstance(value, dict) and ("text" in value or "answer_start" in value):
        texts, starts = value.get("text"), value.get("answer_start")
        texts = list(texts.tolist() if hasattr(texts, "tolist") else texts) if texts is not None else []
        starts = list(starts.tolist() if hasattr(starts, "tolist") else starts) if starts is not None else [None] * len(texts)
        return answers_json(texts, starts)
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        items = list(value.tolist() if hasattr(value, "tolist") else value)
        if all(isinstance(a, dict) for a in items):
            return answers_json([a.get("text") for a in items], [a.get("answer_start") for a in items])
    return json.dumps({"malformed": str(value)})


# ---- validation -------------------------------------------------------------------------------------------
def check_answers(value: str, context: str) -> tuple[dict | None, str | None, int]:
    """(the answers with starts that slice the context, the quarantine reason, answers repaired).

    An answer whose text is not at its answer_start (or has none) is found by search: once in the context, its start
    is repaired; several times, `ambiguous_answer_start`; never (or longer than the context), `answer_not_in_context`.
    A cell that is not a list of answer texts with integer starts is `malformed_answers`."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return None, "malformed_answers", 0
    texts, starts = parsed.get("text"), parsed.get("answer_start")
    if "malformed" in parsed or not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
        return None, "malformed_answers", 0
    fixed, repaired = [], 0
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text.strip():
            return None, "malformed_answers", 0
        if start is not None and not isinstance(start, int):
            try:
                start = int(str(start).strip())
            except ValueError:
                return None, "malformed_answers", 0
        if start is not None and 0 <= start and context[start : start + len(text)] == text:
            fixed.append(start)
            continue
        found = [m.start() for m in re.finditer(re.escape(text), context)]
        if len(found) == 1:
            fixed.append(found[0])
            repaired += start is not None  # a missing start found by search is not a repair
        elif found:
            return None, "ambiguous_answer_start", 0
        else:
            return None, "answer_not_in_context", 0
    return {"text": texts, "answer_start": fixed}, None, repaired


# ---- the official metric (SQuAD v1.1 / v2.0 evaluate scripts) -------------------------------------------------
def normalize_answer(text: str) -> str:
    """Lower case, punctuation and the articles a/an/the removed, whitespace collapsed (the official normalisation)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised strings; an empty answer scores 1 against an empty gold, else 0."""
    predicted, truth = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not truth:
        return float(predicted == truth)
    common = collections.Counter(predicted) & collections.Counter(truth)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(metric, prediction: str, golds: list[str]) -> float:
    """The metric against the best-matching gold answer; an unanswerable question's gold is the empty answer."""
    return max(metric(prediction, gold) for gold in (golds or [""]))


def squad_scores(predictions: list[str], golds: list[list[str]]) -> dict:
    """exact_match and f1 as fractions; with unanswerable questions also has_answer_f1, no_answer_f1 and
    no_answer_accuracy (answered or not, as the gold says)."""
    em = [best_over_golds(exact_match, p, g) for p, g in zip(predictions, golds)]
    f1 = [best_over_golds(token_f1, p, g) for p, g in zip(predictions, golds)]
    n = max(len(predictions), 1)
    scores = {"exact_match": sum(em) / n, "f1": sum(f1) / n}
    unanswerable = [not g for g in golds]
    if any(unanswerable):
        has = [v for v, u in zip(f1, unanswerable) if not u]
        none = [v for v, u in zip(f1, unanswerable) if u]
        scores["has_answer_f1"] = sum(has) / len(has) if has else 0.0
        scores["no_answer_f1"] = sum(none) / len(none)
        scores["no_answer_accuracy"] = sum((not p) == u for p, u in zip(predictions, unanswerable)) / n
    return scores
