"""The classical baseline of question answering: a sliding-window word overlap (after the SQuAD paper's sliding-window
baseline). Every short span of the context is scored by how many of the question's words, weighted by their inverse
document frequency over the training contexts, appear in the words around it; the span itself must not repeat a
question word. The best-scoring span is the answer.
"""

from __future__ import annotations

import math
import re

WORD = re.compile(r"\w+", re.UNICODE)
NEIGHBOURHOOD = 10  # words either side of a span that count as its context
MAX_SPAN_WORDS = 3
STOP = frozenset(
    "a an the of in on at to for from by with and or is are was were be been what which who whom whose when where why how "
    "did do does that this these those it its as into than then there their they he she his her".split()
)


def words(text: str) -> list[tuple[str, int, int]]:
    """(lower-cased word, start, end) of each word of text."""
    return [(m.group().lower(), m.start(), m.end()) for m in WORD.finditer(text)]


def idf_table(contexts: list[str]) -> dict[str, float]:
    """Inverse document frequency of every word over the (distinct) contexts."""
    distinct = list(dict.fromkeys(contexts))
    counts: dict[str, int] = {}
    for context in distinct:
        for word in {w for w, _, _ in words(context)}:
            counts[word] = counts.get(word, 0) + 1
    n = max(len(distinct), 1)
    return {word: math.log((n + 1) / (c + 0.5)) for word, c in counts.items()}


def overlap_answer(question: str, context: str, idf: dict[str, float]) -> dict:
    """The best span: {"text", "start", "end", "score"}: the idf weights of the question's words within NEIGHBOURHOOD words
    of it, each divided by its distance in words (plus one before the span, one and a half after it), so the span beside
    the question's rarest words wins."""
    asked = {w for w, _, _ in words(question)} - STOP
    found = words(context)
    default = max(idf.values(), default=1.0)
    content = [0]  # how many content (non-stop) words come before each word: distances skip "in", "the", ...
    for previous, _, _ in found[:-1]:
        content.append(content[-1] + (previous not in STOP))
    hits = [(k, idf.get(w, default)) for k, (w, _, _) in enumerate(found) if w in asked]
    best, best_score = None, 0.0
    for i in range(len(found)):
        for length in range(1, MAX_SPAN_WORDS + 1):
            j = i + length
            if j > len(found) or any(found[k][0] in asked or found[k][0] in STOP for k in (i, j - 1)):
                continue
            # a question word before the span counts a little more than one after it: answers tend to follow the words asked about
            score = sum(
                weight / (content[i] - content[k] + 1 if k < i else content[k] - content[j - 1] + 1.5)
                for k, weight in hits
                if i - NEIGHBOURHOOD <= k < j + NEIGHBOURHOOD
            )
            score -= 0.01 * length  # a tie goes to the shorter span
            if best is None or score > best_score:
                best, best_score = (found[i][1], found[j - 1][2]), score
    if best is None:
        return {"text": "", "start": -1, "end": -1, "score": 0.0}
    return {"text": context[best[0] : best[1]], "start": best[0], "end": best[1], "score": float(max(best_score, 0.0))}
