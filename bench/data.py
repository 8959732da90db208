"""Data steps at scale: a generated 1,000,000-row CSV (~150 MB) through ingest + clean + split.

    .venv/bin/python bench/data.py [--rows 1000000]

Each measured job runs in its own child process, so its peak RSS is its own:
  baseline  pandas.read_csv of the same file, nothing else (the floor for reading it)
  ours      the ingest, clean and split task bodies as the flow runs them (streamed ingest,
            schema checks, quarantine, dedup, stratified split, Parquet outputs)
The file holds ~1% rows to quarantine (empty text, duplicates, conflicting labels).
Prints rows/s and peak RSS for both, then a JSON line
{"rows", "ours_rows_s", "ours_peak_rss_mb", "baseline_rows_s", "baseline_peak_rss_mb", "ratio_to_read_csv"}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = (
    "film story acting plot scene music director camera script actor drama comedy moment ending character "
    "great dull moving boring clever slow funny tense warm flat bright empty rich thin sharp loose"
).split()
LABELS = ("sport", "business", "science", "world")


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """rows lines of ~150 bytes, written in blocks (low memory); ~1% bad rows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    with open(path, "w") as out:
        out.write("text,label\n")
        block = 100_000
        for start in range(0, rows, block):
            n = min(block, rows - start)
            picks = words[rng.integers(0, len(words), size=(n, 22))]
            labels = np.array(LABELS)[rng.integers(0, len(LABELS), size=n)]
            lines, texts = [], []
            for i in range(n):
                row = start + i
                text = " ".join(picks[i]) + f" {row}"
                if row % 250 == 7:
                    text = ""  # empty text
                elif row % 250 == 11:
                    text = texts[i - 5]  # row-5's text again: a duplicate, or a conflict when the label differs
                texts.append(text)
                lines.append(f"{text},{labels[i]}\n")
            out.write("".join(lines))


def child_baseline(path: str) -> dict:
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_csv(path, dtype=str)
    return {"seconds": time.perf_counter() - started, "rows": len(frame)}


def child_ours(path: str, cache: str) -> dict:
    from tasks.runtime import env

    env.apply()
    from schemas.config import DEFAULT_TASK, CacheConfig, DataConfig
    from tasks.clean import clean_data
    from tasks.ingest import ingest_data
    from tasks.split import split_data

    data, cache_cfg = DataConfig(path=path), CacheConfig(dir=cache)
    started = time.perf_counter()
    raw = ingest_data.fn(data, cache_cfg, DEFAULT_TASK)
    t_ingest = time.perf_counter()
    clean = clean_data.fn(raw, data, cache_cfg, DEFAULT_TASK)
    t_clean = time.perf_counter()
    split = split_data.fn(clean, data, cache_cfg, 42, DEFAULT_TASK)
    done = time.perf_counter()
    assert clean.rows_in == clean.rows_kept + clean.rows_quarantined == raw.rows_out
    return {
        "seconds": done - started,
        "rows": raw.rows_read,
        "ingest_s": t_ingest - started,
        "clean_s": t_clean - t_ingest,
        "split_s": done - t_clean,
        "kept": clean.rows_kept,
        "quarantined": clean.quarantine_reasons,
        "splits": split.sizes,
    }


def run_child(*args: str) -> tuple[dict, float]:
    """Run this script's child mode in a fresh process; returns its result and its peak RSS in MB."""
    done = subprocess.run([sys.executable, __file__, "--child", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"child failed:\n{done.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # max over children so far
    return json.loads(done.stdout.strip().splitlines()[-1]), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to generate (default 1,000,000)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        print(json.dumps(child_baseline(*rest) if kind == "baseline" else child_ours(*rest)))
        return

    with tempfile.TemporaryDirectory(prefix="ff-bench-data-") as tmp:
        path = Path(tmp) / "big.csv"
        started = time.perf_counter()
        generate(path, args.rows)
        print(f"generated {args.rows:,} rows, {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - started:.1f} s")
        # Baseline first: RUSAGE_CHILDREN reports the largest child so far, so ours is measured second
        # and only counts if it is the larger.
        base, base_peak = run_child("baseline", str(path))
        ours, peak = run_child("ours", str(path), str(Path(tmp) / "cache"))
        ours_peak = peak if peak > base_peak else float("nan")
        base_rate, ours_rate = base["rows"] / base["seconds"], ours["rows"] / ours["seconds"]
        print(f"baseline  pandas.read_csv only        {base['seconds']:6.2f} s  {base_rate:10,.0f} rows/s  peak RSS {base_peak:6.0f} MB")
        print(f"ours      ingest + clean + split       {ours['seconds']:6.2f} s  {ours_rate:10,.0f} rows/s  peak RSS {ours_peak:6.0f} MB")
        print(
            f"          ingest {ours['ingest_s']:.2f} s, clean {ours['clean_s']:.2f} s, split {ours['split_s']:.2f} s; "
            f"kept {ours['kept']:,}, quarantined {ours['quarantined']}, splits {ours['splits']}"
        )
        print(
            json.dumps(
                {
                    "rows": ours["rows"],
                    "ours_rows_s": round(ours_rate),
                    "ours_peak_rss_mb": round(ours_peak),
                    "baseline_rows_s": round(base_rate),
                    "baseline_peak_rss_mb": round(base_peak),
                    "ratio_to_read_csv": round(ours["seconds"] / base["seconds"], 2),
                }
            )
        )


if __name__ == "__main__":
    main()
