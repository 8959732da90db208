"""Readers of word-per-line files for task=token_classification: CoNLL-style text and CoNLL-U.

Each sentence becomes one row: `text` the JSON list of its words, `label` the JSON list of their tags,
`line` the line it starts on. Nothing is judged here: a line without a tag column gives a sentence whose
word and tag counts differ, which the clean step quarantines with its reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from schemas.errors import DataError


def _sentences(lines, split_line, skip) -> list[dict]:
    rows, words, tags, start = [], [], [], None
    for number, line in enumerate(lines, start=1):
        if not line.strip():  # a blank line, or one holding only whitespace (WNUT: a lone tab), ends a sentence
            if start is not None:
                rows.append({"text": json.dumps(words, ensure_ascii=False), "label": json.dumps(tags, ensure_ascii=False), "line": start})
            words, tags, start = [], [], None
            continue
        if skip(line):
            continue
        word, tag = split_line(line, number)
        if word is None:
            continue
        start = number if start is None else start
        words.append(word)
        if tag is not None:
            tags.append(tag)
    if start is not None:
        rows.append({"text": json.dumps(words, ensure_ascii=False), "label": json.dumps(tags, ensure_ascii=False), "line": start})
    return rows


def conll_fields(line: str) -> list[str]:
    """A CoNLL line's columns: tab separated when it holds a tab, else separated by runs of spaces."""
    line = line.rstrip("\r\n")
    return line.split("\t") if "\t" in line else line.split()


def parse_conll(lines, token_column: int = 0, tag_column: int | None = None) -> pd.DataFrame:
    """CoNLL-style text: one word per line with its tag in a column (default: the last one), blank lines between
    sentences, -DOCSTART- lines skipped."""

    def split_line(line: str, number: int):
        fields = conll_fields(line)
        word = fields[token_column] if token_column < len(fields) else None
        column = len(fields) - 1 if tag_column is None else tag_column
        tag = fields[column] if column < len(fields) and column != token_column else None
        if word is None:
            word = ""  # a line too short for the token column: the clean step reports it as an empty token
        return word, tag

    return pd.DataFrame(
        _sentences(lines, split_line, lambda line: conll_fields(line)[:1] == ["-DOCSTART-"]), columns=["text", "label", "line"]
    )


def parse_conllu(lines, tag_column: int | None = None) -> pd.DataFrame:
    """CoNLL-U: FORM and UPOS (column 3; 4 for XPOS); comments, multiword ranges (1-2) and empty nodes (1.1) skipped."""
    column = 3 if tag_column is None else tag_column

    def split_line(line: str, number: int):
        fields = line.rstrip("\r\n").split("\t")
        if "-" in fields[0] or "." in fields[0]:
            return None, None
        if len(fields) < 2:
            return "", None
        return fields[1], fields[column] if column < len(fields) else None

    return pd.DataFrame(_sentences(lines, split_line, lambda line: line.startswith("#")), columns=["text", "label", "line"])


def read_conll(path: Path, fmt: str, encoding: str, errors: str, token_column: int = 0, tag_column: int | None = None) -> pd.DataFrame:
    """One row per sentence of a CoNLL (fmt 'conll') or CoNLL-U ('conllu') file."""
    with open(path, encoding=encoding, errors=errors, newline="") as handle:
        lines = handle.read().split("\n")  # not splitlines(): tweets hold U+2028 and other breaks inside words
    frame = parse_conllu(lines, tag_column) if fmt == "conllu" else parse_conll(lines, token_column, tag_column)
    if frame.empty:
        raise DataError(f"'{path.name}' holds no sentence: expected one word per line with its tag, blank lines between sentences")
    return frame
