"""Word-level helpers for task=token_classification, all pure: tag schemes, their validation and repair,
alignment of word tags to the fast tokenizer's pieces, overlapping windows and their merge, the
BIO-valid (constrained) decode, entity spans with character offsets, and the raw-text word rule.

Words are the unit everywhere outside the model: the first piece of each word carries its tag, every
other piece is -100 (ignored by the loss, never read), so each word gets exactly one tag. A sentence
longer than the model's window is cut into overlapping windows; each word is *owned* by the one window
where it sits farthest from an edge, and only that window labels and predicts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

IGNORE = -100  # label of pieces the loss skips (transformers' CrossEntropyLoss ignore_index)
BIO_TAG = re.compile(r"^([BIES])-(.+)$")
LOWER_PREFIX = re.compile(r"^([bies])-(.+)$")
PLAIN, IOB2, IOBES = "plain", "IOB2", "IOBES"
# Characters split off the ends of a whitespace-separated chunk of raw text as words of their own.
EDGE_PUNCTUATION = ".,;:!?\"'()[]{}<>«»“”‘’…"


# ---- schemes -------------------------------------------------------------------------------------
def _parts(tag: str) -> tuple[str, str | None]:
    """('B'|'I'|'E'|'S', type) for a prefixed tag, ('O', None) for anything else."""
    match = BIO_TAG.match(tag)
    return (match.group(1), match.group(2)) if match else ("O", None)


def detect_scheme(tag_lists) -> str:
    """IOBES when prefixed tags use E-/S-, IOB2 when they use only B-/I-, plain (e.g. POS) when no tag is prefixed.

    Judged on occurrences: a file is BIO-style when more than half of its tags other than O are of the form P-TYPE,
    so a few malformed tags (B-, b-per) are found and quarantined (malformed_tags) instead of turning every BIO check
    off; a tag set that is not mostly prefixed is plain."""
    counts: dict[str, int] = {}
    for tags in tag_lists:
        for tag in tags:
            if tag != "O":
                counts[tag] = counts.get(tag, 0) + 1
    prefixed = {t: n for t, n in counts.items() if BIO_TAG.match(t)}
    if not prefixed or 2 * sum(prefixed.values()) <= sum(counts.values()):
        return PLAIN
    return IOBES if any(t[0] in "ES" for t in prefixed) else IOB2


def malformed_tags(tags: list[str], scheme: str) -> list[int]:
    """Positions of tags that are neither O nor P-TYPE in a BIO-style scheme (B-, b-per, PER); none for plain tags."""
    if not is_bio(scheme):
        return []
    return [i for i, tag in enumerate(tags) if tag != "O" and not BIO_TAG.match(tag)]


def repair_case(tags: list[str]) -> list[str]:
    """A lower-case prefix upper-cased (b-per -> B-per); other tags as they are."""
    return [f"{m.group(1).upper()}-{m.group(2)}" if (m := LOWER_PREFIX.match(tag)) else tag for tag in tags]


def is_bio(scheme: str) -> bool:
    return scheme in (IOB2, IOBES)


def _allowed(prev: str | None, cur: str, scheme: str) -> bool:
    """Whether tag cur may follow prev (None: the sentence start) in the scheme."""
    (p, ptype), (c, ctype) = (_parts(prev) if prev is not None else ("O", None)), _parts(cur)
    if scheme == IOB2:
        return c != "I" or (p in "BI" and p != "O" and ptype == ctype)
    if scheme == IOBES:
        inside = p in ("B", "I")
        return (c in ("I", "E") and ptype == ctype) if inside else c in ("O", "B", "S")
    return True


def _may_end(tag: str, scheme: str) -> bool:
    return scheme != IOBES or _parts(tag)[0] not in ("B", "I")


def invalid_positions(tags: list[str], scheme: str) -> list[int]:
    """Positions breaking the scheme: an I-X not after B-X/I-X (IOB2); for IOBES also an E-X not after B-X/I-X
    and a B-X/I-X not followed by I-X/E-X."""
    if not is_bio(scheme):
        return []
    bad = [i for i, tag in enumerate(tags) if not _allowed(tags[i - 1] if i else None, tag, scheme)]
    if scheme == IOBES:
        bad += [
            i
            for i, tag in enumerate(tags)
            if _parts(tag)[0] in ("B", "I")
            and not (i + 1 < len(tags) and _parts(tags[i + 1])[0] in ("I", "E") and _parts(tags[i + 1])[1] == _parts(tag)[1])
        ]
    return sorted(set(bad))


def repair_tags(tags: list[str], scheme: str) -> tuple[list[str], int]:
    """(tags made valid, how many changed): an I-X that starts an entity becomes B-X (IOB2); for IOBES an
    I-X/E-X that starts one becomes B-X/S-X, then a B-X/I-X that ends one becomes S-X/E-X."""
    fixed = list(tags)
    if not is_bio(scheme):
        return fixed, 0
    for i, tag in enumerate(fixed):
        prefix, kind = _parts(tag)
        if prefix in ("I", "E") and not _allowed(fixed[i - 1] if i else None, tag, scheme):
            fixed[i] = f"{'B' if prefix == 'I' else 'S'}-{kind}"
    if scheme == IOBES:
        for i, tag in enumerate(fixed):
            prefix, kind = _parts(tag)
            nxt = _parts(fixed[i + 1]) if i + 1 < len(fixed) else ("O", None)
            if prefix in ("B", "I") and not (nxt[0] in ("I", "E") and nxt[1] == kind):
                fixed[i] = f"{'S' if prefix == 'B' else 'E'}-{kind}"
    return fixed, sum(a != b for a, b in zip(tags, fixed))


def entity_chunks(tags: list[str], scheme: str) -> list[tuple[str, int, int]]:
    """(type, first word, last word + 1) of every entity of a valid sequence (strict: a chunk starts at B-/S-)."""
    chunks, start, kind = [], None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, ctype = _parts(tag)
        if start is not None and (prefix in ("O", "B", "S") or ctype != kind):
            chunks.append((kind, start, i))
            start = None
        if prefix in ("B", "S") or (prefix in ("I", "E") and start is None):
            start, kind = i, ctype
        if scheme == IOBES and prefix in ("E", "S") and start is not None:
            chunks.append((kind, start, i + 1))
            start = None
    return chunks


# ---- decoding --------------------------------------------------------------------------------------
def constrained_decode(proba: np.ndarray, labels: list[str], scheme: str) -> np.ndarray:
    """The tag ids of the most probable sequence that is valid in the scheme (Viterbi over log probabilities
    with forbidden transitions removed); the plain argmax for plain tags or when no valid sequence exists."""
    proba = np.asarray(proba, dtype=np.float64)
    if len(proba) == 0:
        return np.zeros(0, dtype=np.int64)
    if not is_bio(scheme):
        return proba.argmax(axis=1)
    logp = np.log(np.clip(proba, 1e-12, 1.0))
    n = len(labels)
    start = np.array([0.0 if _allowed(None, t, scheme) else -np.inf for t in labels])
    trans = np.array([[0.0 if _allowed(a, b, scheme) else -np.inf for b in labels] for a in labels])
    end = np.array([0.0 if _may_end(t, scheme) else -np.inf for t in labels])
    score = start + logp[0]
    back = np.zeros((len(proba), n), dtype=np.int64)
    for i in range(1, len(proba)):
        total = score[:, None] + trans
        back[i] = total.argmax(axis=0)
        score = total[back[i], np.arange(n)] + logp[i]
    score = score + end
    if not np.isfinite(score.max()):
        return proba.argmax(axis=1)
    path = [int(score.argmax())]
    for i in range(len(proba) - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return np.array(path[::-1], dtype=np.int64)


# ---- alignment and windows ---------------------------------------------------------------------------
def align_labels(word_ids: list[int | None], tag_ids: list[int]) -> list[int]:
    """Each word's tag on its first piece, IGNORE on its other pieces and on special tokens (word id None)."""
    out, previous = [], None
    for word in word_ids:
        out.append(IGNORE if word is None or word == previous else tag_ids[word])
        previous = word
    return out


def window_starts(n_pieces: int, size: int, overlap: int) -> list[int]:
    """Start offsets of windows of `size` pieces covering n_pieces, consecutive windows sharing `overlap`."""
    if n_pieces <= size:
        return [0]
    step = max(1, size - overlap)
    starts = list(range(0, n_pieces - size, step))
    return starts + [n_pieces - size]


def owners(first_pieces: list[int], starts: list[int], size: int) -> list[int]:
    """For each word's first-piece position, the window that sees it with the most context on its nearer side."""
    found = []
    for q in first_pieces:
        best, best_margin = 0, -1
        for w, s in enumerate(starts):
            if s <= q < s + size:
                margin = min(q - s, s + size - 1 - q)
                if margin > best_margin:
                    best, best_margin = w, margin
        found.append(best)
    return found


@dataclass
class Window:
    """One model input: piece ids with special tokens, and per position the sentence's word index when this
    window owns that word's first piece (-1 elsewhere)."""

    row: int
    input_ids: list[int]
    word_ids: list[int]


def sentence_windows(
    row: int, piece_ids: list[int], piece_words: list[int], n_words: int, size: int, overlap: int, prefix: list[int], suffix: list[int]
) -> list[Window]:
    """Windows of one sentence (pieces without special tokens, piece_words the word of each piece)."""
    first = {}
    for position, word in enumerate(piece_words):
        first.setdefault(word, position)
    if len(first) != n_words:
        raise ValueError(f"row {row}: {n_words - len(first)} words have no tokenizer piece")
    starts = window_starts(len(piece_ids), size, overlap)
    positions = [first[w] for w in range(n_words)]
    owner = owners(positions, starts, size)
    windows = []
    for w, s in enumerate(starts):
        ids = piece_ids[s : s + size]
        marks = [-1] * len(ids)
        for word, (q, o) in enumerate(zip(positions, owner)):
            if o == w:
                marks[q - s] = word
        windows.append(Window(row, prefix + ids + suffix, [-1] * len(prefix) + marks + [-1] * len(suffix)))
    return windows


def encode_sentences(tokenizer, sentences: list[list[str]], max_length: int) -> tuple[list[Window], np.ndarray]:
    """Every sentence as owned windows of at most max_length tokens (special tokens included), and each
    sentence's full length in tokens. Words the tokenizer turns into no piece at all (zero-width characters)
    are read as the unknown token, so every word still gets a tag."""
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    size = max_length - specials
    if size < 2:
        raise ValueError(f"train.max_length {max_length} leaves no room for words next to {specials} special tokens")
    overlap = size // 4
    prefix = [tokenizer.cls_token_id] if tokenizer.cls_token_id is not None and specials >= 1 else []
    suffix = [tokenizer.sep_token_id] if tokenizer.sep_token_id is not None and specials >= 2 else []
    encoded = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
    windows, lengths = [], np.zeros(len(sentences), dtype=np.int64)
    for row, words in enumerate(sentences):
        piece_words = encoded.word_ids(row)
        present = set(piece_words)
        if len(present) != len(words):
            words = [word if i in present else tokenizer.unk_token for i, word in enumerate(words)]
            again = tokenizer([words], is_split_into_words=True, add_special_tokens=False)
            ids, piece_words = again["input_ids"][0], again.word_ids(0)
        else:
            ids = encoded["input_ids"][row]
        windows += sentence_windows(row, ids, piece_words, len(words), size, overlap, prefix, suffix)
        lengths[row] = len(ids) + specials
    return windows, lengths


def window_labels(window: Window, tag_ids: list[int]) -> list[int]:
    """The window's training labels: the tag on each owned first piece, IGNORE elsewhere."""
    return [tag_ids[w] if w >= 0 else IGNORE for w in window.word_ids]


def merge_windows(rows: list[int], word_ids: list[list[int]], values: list[np.ndarray], n_words: list[int]) -> list[np.ndarray]:
    """Per sentence (rows index into n_words), the value at each word's owned first piece, in word order."""
    merged = [None] * len(n_words)
    for row, marks, value in zip(rows, word_ids, values):
        value = np.asarray(value)
        if merged[row] is None:
            merged[row] = np.zeros((n_words[row], *value.shape[1:]), dtype=value.dtype)
        marks = np.asarray(marks[: len(value)])
        owned = marks >= 0
        merged[row][marks[owned]] = value[: len(marks)][owned]
    return [m if m is not None else np.zeros((0,)) for m in merged]


# ---- raw text and spans --------------------------------------------------------------------------------
def split_words(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) of raw text: whitespace separates chunks, and punctuation at either end of a chunk
    (EDGE_PUNCTUATION) is a word of its own; `@user`, `#tag`, URLs and inner hyphens or apostrophes stay whole."""
    words = []
    for match in re.finditer(r"\S+", text):
        chunk, start = match.group(), match.start()
        head = 0
        while head < len(chunk) and chunk[head] in EDGE_PUNCTUATION:
            head += 1
        tail = len(chunk)
        while tail > head and chunk[tail - 1] in EDGE_PUNCTUATION:
            tail -= 1
        words += [(chunk[i], start + i, start + i + 1) for i in range(head)]
        if tail > head:
            words.append((chunk[head:tail], start + head, start + tail))
        words += [(chunk[i], start + i, start + i + 1) for i in range(tail, len(chunk))]
    return words


def join_words(words: list[str]) -> tuple[str, list[int], list[int]]:
    """Pre-tokenized words as one text joined by single spaces, with each word's character offsets."""
    starts, ends, position = [], [], 0
    for word in words:
        starts.append(position)
        ends.append(position + len(word))
        position += len(word) + 1
    return " ".join(words), starts, ends


def entity_spans(text: str, starts: list[int], ends: list[int], tags: list[str], scores: list[float], scheme: str) -> list[dict]:
    """[{"type", "text", "start", "end", "score"}] of the entities in a valid tag sequence; offsets are
    character (code point) positions in text; score is the mean probability of the entity's tags."""
    spans = []
    for kind, first, last in entity_chunks(tags, scheme):
        start, end = starts[first], ends[last - 1]
        spans.append(
            {
                "type": kind,
                "text": text[start:end],
                "start": int(start),
                "end": int(end),
                "score": round(float(np.mean(scores[first:last])), 6),
            }
        )
    return spans
