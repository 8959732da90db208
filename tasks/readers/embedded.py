"""The embedded default data: Rotten Tomatoes review snippets shipped inside a pip package (schemas/config.py names it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

NOT_REVIEWS = "movie plot summaries (not reviews)"


def read_embedded(path: Path) -> tuple[pd.DataFrame, int, str]:
    """(the reviews as text and label columns, rows left out as not data, why): the corpus also holds movie plot
    summaries, which are not reviews and carry no label."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    plot = frame["category"] == "plot"
    return frame.loc[~plot, ["text", "category"]].rename(columns={"category": "label"}), int(plot.sum()), NOT_REVIEWS
