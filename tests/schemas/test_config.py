import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.config import DEFAULT_DATA, DEFAULT_MODEL, FinetuneConfig, describe_options, flatten, load_config, resolve_model_path
from schemas.errors import ConfigError


def test_defaults_are_the_embedded_model_and_data():
    cfg = load_config()
    assert cfg.data.path == DEFAULT_DATA
    assert cfg.model.name_or_path == DEFAULT_MODEL
    assert (Path(resolve_model_path(DEFAULT_MODEL)) / "config.json").is_file()
    assert cfg.tracking.resolved_uri().startswith("sqlite:///") and cfg.tracking.resolved_uri().endswith("mlruns/mlflow.db")


def test_overrides_are_typed():
    cfg = load_config(overrides=["train.epochs=1", "train.learning_rate=5e-5", "data.labels=[neg, pos]", "data.max_rows=2000", "seed=7"])
    assert cfg.train.epochs == 1
    assert cfg.train.learning_rate == pytest.approx(5e-5)
    assert cfg.data.labels == ["neg", "pos"]
    assert cfg.data.max_rows == 2000
    assert cfg.seed == 7


def test_file_then_overrides_later_wins(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  epochs: 5\n  batch_size: 8\nregistry:\n  model_name: from-file\n")
    cfg = load_config(path, ["train.epochs=2"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.registry.model_name) == (2, 8, "from-file")


@pytest.mark.parametrize("override", ["train.epoch=1", "nosuch=1", "data.text_col=x"])
def test_unknown_keys_are_rejected(override):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        load_config(overrides=[override])


def test_unknown_key_in_file_rejected(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  lr: 0.1\n")
    with pytest.raises(ValidationError, match="lr"):
        load_config(path)


@pytest.mark.parametrize("override", ["train.epochs=-1", "registry.min_f1=1.5", "train.precision=fp8", "data.val_ratio=0"])
def test_bad_values_are_rejected(override):
    with pytest.raises(ValidationError):
        load_config(overrides=[override])


def test_ratios_must_leave_training_rows():
    with pytest.raises(ValidationError, match="at least 20%"):
        load_config(overrides=["data.val_ratio=0.45", "data.test_ratio=0.45"])


def test_override_without_equals_is_a_config_error():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(overrides=["train.epochs"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_every_option_is_described_and_flattened():
    rows = describe_options()
    keys = {key for key, _, _ in rows}
    assert {
        "data.path",
        "data.text_column",
        "data.label_column",
        "data.max_rows",
        "model.name_or_path",
        "train.epochs",
        "train.batch_size",
        "train.learning_rate",
        "train.max_length",
        "seed",
        "registry.model_name",
        "registry.min_accuracy",
        "registry.min_f1",
        "tracking.uri",
    } <= keys
    assert all(desc for _, _, desc in rows), [key for key, _, desc in rows if not desc]
    assert set(flatten(FinetuneConfig())) == keys


@pytest.mark.parametrize(
    "override, rule",
    [
        ("registry.model_name=../../x", "letters, digits"),
        ("registry.model_name=it's", "no spaces, quotes"),
        ("registry.model_name=a b", "no spaces"),
        ("registry.alias=v1", "not 'latest', 'v<number>'"),
        ("registry.alias=Latest", "MLflow reserves them"),
        ("registry.alias=version3", "version<number>"),
        ("registry.alias=prod.eu", "letters"),
    ],
)
def test_names_and_aliases_are_checked_before_any_work(override, rule):
    with pytest.raises(ValidationError, match=re.escape(rule)):
        load_config(overrides=[override])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=.inf", "finite number"),
        ("train.learning_rate=.nan", "finite number"),
        ("runtime.io_retry_delay_seconds=.inf", "finite number"),
        ("seed=-1", "greater than or equal to 0"),
        ("seed=4294967296", "less than or equal to"),
        ("train.dataloader_workers=-1", "greater than or equal to 0"),
        ("train.dataloader_workers=1000", "less than or equal to 64"),
        ("train.dataloader_workers=many", "auto"),
        ("train.embedding_rows=some", "'used' or 'all'"),
    ],
)
def test_values_that_would_crash_a_later_step_are_rejected(override, message):
    with pytest.raises(ValidationError, match=message):
        load_config(overrides=[override])


def test_safe_names_pass():
    cfg = load_config(overrides=["registry.model_name=team.reviews-v2_1", "registry.alias=prod_eu-2", "seed=0"])
    assert (cfg.registry.model_name, cfg.registry.alias, cfg.seed) == ("team.reviews-v2_1", "prod_eu-2", 0)


def test_text_that_is_not_yaml_is_judged_as_text(tmp_path):
    with pytest.raises(ValidationError, match="alias '@x' is not allowed"):
        load_config(overrides=["registry.alias=@x"])
    broken = tmp_path / "cfg.yaml"
    broken.write_text("train: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
