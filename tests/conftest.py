"""Shared fixtures: the project environment, a tiny random BERT with the real MiniLM tokenizer,
a Prefect test server, and configs that point MLflow and the cache at temporary folders."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tasks.runtime import env

# Before anything imports prefect: its state lives in a throwaway folder during tests, even when
# the caller (make) exported the project's PREFECT_HOME.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="ff-prefect-")
os.environ.pop("PREFECT_API_URL", None)
env.apply()

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from schemas.config import EMBEDDED_MODEL, FinetuneConfig, embedded_path  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT saved with the real MiniLM tokenizer files."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    minilm = embedded_path(*EMBEDDED_MODEL)
    from tasks.tokenize import TOKENIZER_FILES

    for name in TOKENIZER_FILES:
        if (minilm / name).is_file():
            shutil.copy(minilm / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=512
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect test API for the whole session (each start costs 8-16 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def cli_env(prefect_server) -> dict:
    """Environment for a CLI subprocess that talks to the session's Prefect server (no 10-20 s ephemeral start)."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}


def toy_frame(n_per_class: int = 40, labels=("neg", "pos"), seed: int = 0) -> pd.DataFrame:
    """A small learnable corpus: each class has its own words."""
    import random

    rng = random.Random(seed)
    vocab = {
        "neg": ["awful", "boring", "dull", "terrible", "bad", "weak", "tedious"],
        "pos": ["great", "superb", "moving", "brilliant", "good", "fun", "charming"],
        "mid": ["okay", "average", "fine", "middling", "passable", "so-so", "plain"],
    }
    rows = []
    for label in labels:
        for i in range(n_per_class):
            words = rng.sample(vocab[label], 3) + ["film", str(i)]
            rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows).sample(frac=1, random_state=seed).reset_index(drop=True)


@pytest.fixture
def toy_csv(tmp_path) -> Path:
    path = tmp_path / "toy.csv"
    toy_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow sqlite store with its schema created once: a fresh one costs ~10 s of migrations."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}", f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def new_store(empty_store):
    """new_store(folder) -> the URI of a real, empty MLflow store in folder (a copy of the migrated template)."""
    import shutil

    def make(folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "mlflow.db").exists():
            shutil.copy(empty_store, folder / "mlflow.db")
        return f"sqlite:///{folder / 'mlflow.db'}"

    return make


@pytest.fixture
def make_config(tmp_path, tiny_model_dir, new_store):
    """Config factory for the tiny model with MLflow and the cache in tmp_path."""
    uri = new_store(tmp_path / "mlruns")

    def make(**sections) -> FinetuneConfig:
        tree = {
            "model": {"name_or_path": str(tiny_model_dir)},
            "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "max_length": 32, "precision": "fp32"},
            "registry": {"model_name": "tiny", "min_accuracy": 0.0, "min_f1": 0.0, "beat_baseline": False},
            "tracking": {"uri": uri},
            "cache": {"dir": str(tmp_path / "cache")},
        }
        for section, values in sections.items():
            if isinstance(values, dict):
                tree.setdefault(section, {}).update(values)
            else:
                tree[section] = values
        return FinetuneConfig.model_validate(tree)

    return make


@pytest.fixture
def small_disk(tmp_path):
    import subprocess

    """small_disk(size) -> a folder on a tmpfs of that size, unmounted afterwards."""
    mounted = []

    def make(size: str):
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()[:100]})")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
