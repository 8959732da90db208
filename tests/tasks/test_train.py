import json
from pathlib import Path

import pytest
from transformers import AutoConfig

from schemas.errors import ConfigError
from task_types.inference import cpu_has_fast_bf16
from tasks.training.recipe import choose_device, choose_precision


def test_choose_device():
    assert choose_device("auto", cuda_available=True) == "cuda"
    assert choose_device("auto", cuda_available=False) == "cpu"
    with pytest.raises(ConfigError, match="no GPU"):
        choose_device("cuda", cuda_available=False)


def test_choose_precision():
    assert choose_precision("auto", "cuda", cuda_bf16=True) == "bf16"
    assert choose_precision("auto", "cuda", cuda_bf16=False) == "fp16"
    assert choose_precision("auto", "cpu", cuda_bf16=False, cpu_bf16=True) == "bf16"
    assert choose_precision("auto", "cpu", cuda_bf16=False, cpu_bf16=False) == "fp32"
    assert choose_precision("fp32", "cuda", cuda_bf16=True) == "fp32"
    with pytest.raises(ConfigError, match="needs a GPU"):
        choose_precision("fp16", "cpu", cuda_bf16=False)


def test_cpu_bf16_flags():
    assert cpu_has_fast_bf16("flags : fpu avx2 avx512_bf16") is True
    assert cpu_has_fast_bf16("flags : fpu avx2 amx_bf16 amx_tile") is True
    assert cpu_has_fast_bf16("flags : fpu avx2 fma") is False


def test_fine_tune_saves_label_names_and_config(prefect_server, make_config, toy_csv):
    from tasks.clean import clean_data
    from tasks.ingest import ingest_data
    from tasks.split import split_data
    from tasks.tokenize import tokenize_data
    from tasks.train import fine_tune

    cfg = make_config(data={"path": str(toy_csv)}, train={"epochs": 2})
    raw = ingest_data.fn(cfg.data, cfg.cache, cfg.task)
    split = split_data.fn(clean_data.fn(raw, cfg.data, cfg.cache, cfg.task), cfg.data, cfg.cache, cfg.seed, cfg.task)
    tokens = tokenize_data.fn(split, cfg.model, cfg.train, cfg.cache, cfg.task)
    result = fine_tune.fn(tokens, cfg.model, cfg.train, cfg.cache, cfg.seed, cfg.task)
    config = AutoConfig.from_pretrained(result.path)
    assert config.id2label == {0: "neg", 1: "pos"}
    assert result.device == "cpu" and result.precision == "fp32" and result.labels == ["neg", "pos"]
    assert result.epochs_run == pytest.approx(2)
    assert any("eval_f1_macro" in entry for entry in result.history)
    saved = json.loads((Path(result.path).parent / "training_config.json").read_text())
    assert saved["seed"] == cfg.seed and saved["target"] == {"labels": ["neg", "pos"]}
    again = fine_tune.fn(tokens, cfg.model, cfg.train, cfg.cache, cfg.seed, cfg.task)
    assert again.reused and again.path == result.path


def test_resume_skips_and_removes_a_checkpoint_killed_mid_save_or_damaged(tmp_path):
    from tasks.training.recipe import last_complete_checkpoint, write_checkpoint_manifest

    for step, state in (
        (20, '{"global_step": 20}'),
        (40, '{"global_step": 40}'),
        (60, None),
        (80, '{"global_st'),
        (100, '{"global_step": 100}'),
    ):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"weights" * 100)
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
        if step in (20, 40, 100):
            write_checkpoint_manifest(folder)
    with open(tmp_path / "checkpoint-100" / "model.safetensors", "r+b") as weights:
        weights.truncate(50)  # a disk that filled up, or a copy cut short
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-40")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-20", "checkpoint-40"]
    assert last_complete_checkpoint(tmp_path / "absent") is None


def _two_epoch_tokens(make_config, toy_csv):
    """The toy data tokenized for a two-epoch run without early stopping: (config, tokenize result)."""
    from tasks.clean import clean_data
    from tasks.ingest import ingest_data
    from tasks.split import split_data
    from tasks.tokenize import tokenize_data

    cfg = make_config(data={"path": str(toy_csv)}, train={"epochs": 2, "early_stopping_patience": 0})
    raw = ingest_data.fn(cfg.data, cfg.cache, cfg.task)
    split = split_data.fn(clean_data.fn(raw, cfg.data, cfg.cache, cfg.task), cfg.data, cfg.cache, cfg.seed, cfg.task)
    tokens = tokenize_data.fn(split, cfg.model, cfg.train, cfg.cache, cfg.task)
    return cfg, tokens


def test_a_truncated_checkpoint_falls_back_to_the_previous_good_one(prefect_server, make_config, toy_csv, tmp_path):
    from tasks.training.recipe import train_model

    cfg, tokens = _two_epoch_tokens(make_config, toy_csv)
    checkpoints = tmp_path / "checkpoints"
    (tmp_path / "first").mkdir()
    train_model(tokens, cfg.model, cfg.train, cfg.seed, tmp_path / "first", checkpoints, cfg.task)
    saved = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(saved) == 2
    weights = saved[-1] / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size // 3)
    (tmp_path / "again").mkdir()
    result = train_model(tokens, cfg.model, cfg.train, cfg.seed, tmp_path / "again", checkpoints, cfg.task)
    assert result["resumed_from"] == saved[0].name
    assert result["epochs_run"] == pytest.approx(2)


def test_a_multi_label_head_starts_at_each_labels_base_rate():
    import numpy as np
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from task_types import get_task_type
    from tasks.training.recipe import set_output_bias

    encoded = [[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]]  # rates 3/4, 1/4, 0 (clipped to 1e-4)
    bias = get_task_type("multi_label").initial_bias(encoded, None)
    assert bias == pytest.approx([np.log(3), np.log(1 / 3), np.log(1e-4 / (1 - 1e-4))], abs=1e-5)
    weighted = get_task_type("multi_label").initial_bias(encoded, [1.0, 3.0, 10.0])  # the odds the weighted loss sees
    assert weighted[1] == pytest.approx(0.0, abs=1e-6)
    assert get_task_type("classification").initial_bias([0, 1], None) is None

    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=3)
    )
    assert set_output_bias(model, bias)
    assert model.classifier.bias.tolist() == pytest.approx(bias, abs=1e-5)
    assert not set_output_bias(model, [0.0, 0.0])  # a head of another width keeps its init
    assert not set_output_bias(model, None)


def test_dataloader_workers_auto_is_none_on_a_cpu_and_four_at_most_a_quarter_of_the_share_on_a_gpu():
    from tasks.training.recipe import loader_workers

    assert loader_workers("auto", "cpu", cpus=64) == 0
    assert loader_workers("auto", "cuda", cpus=64) == 4
    assert loader_workers("auto", "cuda", cpus=16) == 4  # two loaders: 8 of 16
    assert loader_workers("auto", "cuda", cpus=8) == 2  # a torchrun rank's or Ray worker's share
    assert loader_workers("auto", "cuda", cpus=3) == 0
    assert loader_workers(3, "cpu", cpus=2) == 3  # a number as given


def test_collating_in_worker_processes_trains_the_same_model(prefect_server, make_config, toy_csv, tmp_path):
    import torch
    from safetensors.torch import load_file

    from tasks.clean import clean_data
    from tasks.ingest import ingest_data
    from tasks.split import split_data
    from tasks.tokenize import tokenize_data
    from tasks.training.recipe import train_model

    cfg = make_config(data={"path": str(toy_csv)}, train={"epochs": 1, "learning_rate": 1e-3})
    raw = ingest_data.fn(cfg.data, cfg.cache, cfg.task)
    split = split_data.fn(clean_data.fn(raw, cfg.data, cfg.cache, cfg.task), cfg.data, cfg.cache, cfg.seed, cfg.task)
    tokens = tokenize_data.fn(split, cfg.model, cfg.train, cfg.cache, cfg.task)
    weights = {}
    for workers in (0, 2):
        out = tmp_path / f"workers-{workers}"
        out.mkdir()
        train = cfg.train.model_copy(update={"dataloader_workers": workers})
        train_model(tokens, cfg.model, train, cfg.seed, out, tmp_path / f"checkpoints-{workers}", cfg.task)
        weights[workers] = load_file(next(out.rglob("model.safetensors")))
    assert weights[0].keys() == weights[2].keys()
    start = load_file(next(Path(cfg.model.name_or_path).rglob("model.safetensors")))
    before = {name: start[key] for name in weights[0] for key in start if name == key or name.endswith("." + key)}
    assert before  # the encoder's weights, under the task model's prefix
    moved = [name for name, value in before.items() if not torch.equal(weights[0][name], value)]
    assert moved  # it trained
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[2][name]), name


def test_validation_during_training_runs_at_most_at_the_training_batch_on_a_cpu():
    from schemas.config import TrainConfig
    from tasks.training.recipe import validation_batch_size

    assert validation_batch_size(TrainConfig(batch_size=16), "cpu") == 16
    assert validation_batch_size(TrainConfig(batch_size=16, eval_batch_size=8), "cpu") == 8
    assert validation_batch_size(TrainConfig(batch_size=16), "cuda") == TrainConfig().eval_batch_size


def test_the_last_checkpoint_holds_no_optimizer_and_a_run_resumes_from_it_to_the_same_model(prefect_server, make_config, toy_csv, tmp_path):
    import torch
    from safetensors.torch import load_file

    from tasks.training.recipe import train_model

    cfg, tokens = _two_epoch_tokens(make_config, toy_csv)
    checkpoints = tmp_path / "checkpoints"
    (tmp_path / "first").mkdir()
    first = train_model(tokens, cfg.model, cfg.train, cfg.seed, tmp_path / "first", checkpoints, cfg.task)
    assert first["embedding_rows_trained"] > 0  # train.embedding_rows=used, the default
    middle, last = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert (middle / "optimizer.pt").is_file() and (middle / "rng_state.pth").is_file()  # training goes on after it
    assert not (last / "optimizer.pt").exists() and not (last / "rng_state.pth").exists()
    assert any(k.endswith("word_embeddings.rows") for k in load_file(last / "model.safetensors"))  # the trained rows alone
    (tmp_path / "again").mkdir()
    again = train_model(tokens, cfg.model, cfg.train, cfg.seed, tmp_path / "again", checkpoints, cfg.task)
    assert again["resumed_from"] == last.name
    saved, resumed = (load_file(tmp_path / name / "model" / "model.safetensors") for name in ("first", "again"))
    assert saved.keys() == resumed.keys() and any(k.endswith("word_embeddings.weight") for k in saved)  # a plain model
    assert all(torch.equal(saved[k], resumed[k]) for k in saved)


def test_the_best_checkpoint_is_loaded_back_only_when_it_is_not_the_last_step():
    from tasks.training.recipe import best_is_in_memory

    assert best_is_in_memory("/run/checkpoints/checkpoint-120", 120)  # the last step's: its weights are in memory
    assert not best_is_in_memory("/run/checkpoints/checkpoint-60", 120)  # an earlier epoch's: loaded back
    assert not best_is_in_memory("/run/checkpoints/checkpoint-1200", 120) and not best_is_in_memory(None, 120)
