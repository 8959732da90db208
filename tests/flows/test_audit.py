"""The third audit's failures, each through the real command as a user runs it (FT = flows/finetune.py, PR =
flows/predict.py, SW = flows/sweep.py, the registry and export CLIs): one `error:` line or a counted quarantine,
no traceback, nothing lost, no secret printed."""

import json
import socket
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import toy_frame


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def _one_line(result, code: int = 2) -> str:
    errors = _error_lines(result)
    assert result.returncode == code and len(errors) == 1 and "Traceback" not in result.stderr, (result.returncode, result.stderr[-3000:])
    return errors[0]


def _cli(root, env, script: str, *args, timeout: int = 400):
    return subprocess.run([sys.executable, *script.split(), *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def base(tmp_path, tiny_model_dir, new_store):
    """Options pointing a CLI run at the tiny model, a fresh store and a cache in tmp_path."""
    uri = new_store(tmp_path / "mlruns")
    options = [
        f"model.name_or_path={tiny_model_dir}",
        f"tracking.uri={uri}",
        f"cache.dir={tmp_path / 'cache'}",
        "train.epochs=1",
        "train.batch_size=16",
        "train.learning_rate=1e-3",
        "train.max_length=32",
        "train.precision=fp32",
        "registry.beat_baseline=false",
    ]
    return {"uri": uri, "options": options, "tmp": tmp_path}


def _ft(request, cli_env, base, *args, summary: bool = True):
    extra = [f"--summary-json={base['tmp'] / 'summary.json'}"] if summary else []
    done = _cli(request.config.rootpath, cli_env, "flows/finetune.py", *base["options"], *extra, *args)
    return done, (json.loads((base["tmp"] / "summary.json").read_text()) if summary and done.returncode == 0 else None)


# 1 ---------------------------------------------------------------------------------------------------------------------
def test_registry_commands_on_an_unreachable_server_fail_in_seconds_and_never_print_the_password(request, cli_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    uri = f"http://alice:S3cr3tPW@127.0.0.1:{port}"
    for command in (["list"], ["promote", "--version", "1", "--why", "x"], ["rollback", "--why", "x"]):
        started = time.monotonic()
        done = _cli(request.config.rootpath, cli_env, "-m flows.registry", *command, "--tracking-uri", uri, "--name", "sec", timeout=120)
        line = _one_line(done)
        assert time.monotonic() - started < 60 and "does not answer" in line and "--tracking-uri" in line
        assert "S3cr3tPW" not in done.stdout + done.stderr and "alice" not in done.stdout + done.stderr


# 2, 14 --------------------------------------------------------------------------------------------------------------------
def test_malformed_label_lists_are_quarantined_and_never_become_label_names(request, cli_env, base):
    rows = [{"text": f"bread rice meal {i}", "tags": ["food"]} for i in range(12)] + [
        {"text": f"tent roof camp {i}", "tags": ["shelter", "food"] if i % 3 == 0 else ["shelter"]} for i in range(12)
    ]
    rows += [{"text": "bad one", "tags": "not a list"}, {"text": "bad two", "tags": [1, {"a": 2}]}, {"text": "bad three", "tags": '["neg"'}]
    path = base["tmp"] / "lists.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    done, summary = _ft(
        request, cli_env, base, f"data.path={path}", "data.label_column=tags", "task=multi_label", "registry.gates={f1_micro: 0.0}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary["quarantine_reasons"] == {"malformed_label_list": 3} and summary["rows_kept"] == 24
    labels = json.loads(MlflowClient(base["uri"], base["uri"]).get_model_version("finetune-flow-classifier", "1").tags["labels"])
    assert labels == ["food", "shelter"]
    clash = _ft(request, cli_env, base, f"data.path={path}", "task=multi_label", "data.label_columns=[text,tags]", summary=False)[0]
    assert "data.label_columns names ['text'], also the text column" in _one_line(clash)


# 3 ------------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow  # minutes of CPU on 2 cores: `make test-slow`
def test_a_few_malformed_bio_tags_are_quarantined_and_bio_stays_on(request, cli_env, base):
    sentences = []
    for i in range(30):
        sentences.append([(f"mary{i}", "B-PER"), ("smith", "I-PER"), ("visited", "O"), ("tokyo", "B-LOC"), (f"w{i}", "O")])
    sentences.append([("broken", "B-"), ("tag", "O")])
    sentences.append([("lower", "b-per"), ("case", "O")])
    text = "\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n"
    path = base["tmp"] / "ner.conll"
    path.write_text(text)
    done, summary = _ft(request, cli_env, base, f"data.path={path}", "task=token_classification", "registry.gates={entity_f1: 0.0}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary["quarantine_reasons"] == {"malformed_tag": 2}
    assert "entity_f1" in summary["val_metrics"]  # BIO metrics still on: the file is read as IOB2
    report = json.loads((base["tmp"] / "cache" / "report").glob("*/data_report.json").__next__().read_text())
    assert report["tagging"]["scheme"] == "IOB2" and "B-" not in report["labels"] and "b-per" not in report["labels"]
    fixed, summary = _ft(
        request, cli_env, base, f"data.path={path}", "task=token_classification", "data.tag_repair=fix", "registry.gates={entity_f1: 0.0}"
    )
    assert fixed.returncode == 0 and summary["quarantine_reasons"] == {"malformed_tag": 1}  # b-per repaired; B- has no type to give


# 4 ------------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def champion(tmp_path_factory, tiny_model_dir, prefect_server, empty_store):
    import shutil

    from flows.finetune import finetune
    from schemas.config import FinetuneConfig

    root = tmp_path_factory.mktemp("audit")
    (root / "mlruns").mkdir()
    shutil.copy(empty_store, root / "mlruns" / "mlflow.db")
    toy_frame().to_csv(root / "toy.csv", index=False)
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    cfg = FinetuneConfig.model_validate(
        {
            "data": {"path": str(root / "toy.csv")},
            "model": {"name_or_path": str(tiny_model_dir)},
            "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "max_length": 32, "precision": "fp32"},
            "registry": {"model_name": "tiny", "min_accuracy": 0.0, "min_f1": 0.0, "beat_baseline": False},
            "tracking": {"uri": uri},
            "cache": {"dir": str(root / "cache")},
        }
    )
    finetune(cfg)
    return {"root": root, "uri": uri}


def test_predict_keeps_every_input_column_a_clash_is_refused_or_prefixed(request, cli_env, champion, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": ["great superb film", "awful dull film"], "predicted_label": ["mine", "also mine"]}).to_csv(source, index=False)
    common = ["--name", "tiny", "--tracking-uri", champion["uri"]]
    refused = _cli(request.config.rootpath, cli_env, "flows/predict.py", str(source), str(tmp_path / "out.csv"), *common)
    line = _one_line(refused)
    assert "columns named like predict's outputs ['predicted_label']" in line and "--output-prefix" in line
    assert not (tmp_path / "out.csv").exists()
    done = _cli(
        request.config.rootpath, cli_env, "flows/predict.py", str(source), str(tmp_path / "out.csv"), *common, "--output-prefix", "model_"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["predicted_label"].tolist() == ["mine", "also mine"] and set(out["model_predicted_label"]) <= {"neg", "pos"}
    assert "model_predict_error" in out


# 7, 16 -----------------------------------------------------------------------------------------------------------------------
def test_a_damaged_onnx_export_is_rebuilt_and_a_full_disk_leaves_no_partial_file(request, cli_env, champion, tmp_path, small_disk):
    from flows.predict import predict
    from schemas.predict import PredictConfig

    source = tmp_path / "in.csv"
    pd.DataFrame({"text": ["great superb film", "awful dull film"]}).to_csv(source, index=False)

    def run(quantize: str) -> pd.DataFrame:
        out = tmp_path / f"{quantize}.csv"
        cfg = PredictConfig(
            input=str(source),
            output=str(out),
            name="tiny",
            tracking_uri=champion["uri"],
            runtime="onnx",
            quantize=quantize,
            cache_dir=str(tmp_path / "c"),
        )
        assert predict(cfg)["rows_predicted"] == 2
        return pd.read_csv(out)

    first = run("int8")
    (export,) = [p for p in (tmp_path / "c" / "onnx").iterdir() if p.is_dir() and not p.name.startswith(".")]
    (export / "model.int8.onnx").write_bytes((export / "model.int8.onnx").read_bytes()[:1000])  # truncated
    (export / "model.onnx").write_bytes(b"overwritten")
    assert run("int8")["predicted_label"].tolist() == first["predicted_label"].tolist()  # rebuilt, not trusted
    assert run("none")["predicted_label"].notna().all()

    disk = small_disk("200k")  # far too small for the export
    done = _cli(
        request.config.rootpath, cli_env, "flows/export.py", "--name", "tiny", "--tracking-uri", champion["uri"], "--out", str(disk / "x")
    )
    assert done.returncode in (1, 2) and len(_error_lines(done)) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert not list(disk.rglob("*.partial"))


# 8 ------------------------------------------------------------------------------------------------------------------------
def test_a_huge_regression_target_is_quarantined_and_the_run_trains(request, cli_env, base):
    frame = pd.DataFrame(
        {"text": [f"film number {i} {'good' if i % 2 else 'bad'}" for i in range(40)], "label": [float(i % 5) for i in range(40)]}
    )
    frame.loc[len(frame)] = ["an absurd target", 1e308]
    path = base["tmp"] / "values.csv"
    frame.to_csv(path, index=False)
    done, summary = _ft(request, cli_env, base, f"data.path={path}", "task=regression", "registry.gates={spearman: -1.0, r2: -100.0}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary["quarantine_reasons"] == {"target_out_of_range": 1} and summary["baseline_test_metrics"]["rmse"] < 1e6


# 9 ------------------------------------------------------------------------------------------------------------------------
def test_a_summary_json_on_a_full_disk_is_one_line_that_says_what_was_registered(request, cli_env, base, toy_csv):
    done = _cli(
        request.config.rootpath,
        cli_env,
        "flows/finetune.py",
        *base["options"],
        f"data.path={toy_csv}",
        "registry.min_accuracy=0",
        "registry.min_f1=0",
        "--summary-json=/dev/full",
    )
    line = _one_line(done, code=1)
    assert "cannot write --summary-json /dev/full" in line and "finetune-flow-classifier v1 was registered" in line


# 11 -----------------------------------------------------------------------------------------------------------------------
def test_a_deleted_experiment_is_one_line_naming_it(request, cli_env, base, toy_csv):
    client = MlflowClient(base["uri"], base["uri"])
    client.delete_experiment(client.create_experiment("gone"))
    done = _ft(request, cli_env, base, f"data.path={toy_csv}", "tracking.experiment=gone", summary=False)[0]
    line = _one_line(done)
    assert "tracking.experiment 'gone' was deleted" in line and "mlflow experiments restore" in line


# 12 -----------------------------------------------------------------------------------------------------------------------
def test_a_base_model_with_pickled_weights_is_refused_without_suggesting_to_turn_safety_off(
    request, cli_env, base, toy_csv, tiny_model_dir
):
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = base["tmp"] / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    options = [o for o in base["options"] if not o.startswith("model.")]
    done = _cli(request.config.rootpath, cli_env, "flows/finetune.py", *options, f"model.name_or_path={folder}", f"data.path={toy_csv}")
    line = _one_line(done)
    assert "pytorch_model.bin" in line and "pickle" in line and "weights_only" not in done.stderr and "model.name_or_path" in line


# 18 -----------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow  # minutes of CPU on 2 cores: `make test-slow`
def test_texts_of_unknown_tokens_only_are_counted_or_quarantined_as_the_user_chooses(request, cli_env, base):
    frame = toy_frame()
    frame = pd.concat(
        [frame, pd.DataFrame({"text": ["\U0001f600\U0001f44d", "\U0001f622\U0001f622 \U0001f621"], "label": ["pos", "neg"]})],
        ignore_index=True,
    )
    path = base["tmp"] / "emoji.csv"
    frame.to_csv(path, index=False)
    kept, summary = _ft(request, cli_env, base, f"data.path={path}", "registry.min_accuracy=0", "registry.min_f1=0")
    assert kept.returncode == 0 and summary["rows_quarantined"] == 0, kept.stderr[-2000:]
    assert "unknown tokens only" in open(summary["data_report"]).read()
    quarantined, summary = _ft(
        request, cli_env, base, f"data.path={path}", "data.unknown_only=quarantine", "registry.min_accuracy=0", "registry.min_f1=0"
    )
    assert quarantined.returncode == 0 and summary["quarantine_reasons"] == {"unknown_tokens_only": 2}


# 6, 10, 13, 17: sweeps ---------------------------------------------------------------------------------------------------
def _sweep(request, cli_env, base, *args):
    return _cli(request.config.rootpath, cli_env, "flows/sweep.py", *base["options"], *args)


@pytest.mark.slow  # minutes of CPU on 2 cores: `make test-slow`
def test_sweep_grid_finishes_on_its_last_point_and_a_resumed_tpe_sweep_never_repeats_a_setting(request, cli_env, base, toy_csv):
    data = [f"data.path={toy_csv}", "registry.min_accuracy=0", "registry.min_f1=0", "sweep.pruning=false"]
    grid = _sweep(request, cli_env, base, *data, "--sampler", "grid", "--trials", "2", "sweep.space={train.learning_rate: [1e-3, 5e-4]}")
    assert grid.returncode == 0, grid.stderr[-3000:]
    assert "Study.stop" not in grid.stderr and "2 completed, 0 pruned, 0 failed" in grid.stdout

    space = "sweep.space={train.learning_rate: [1e-3, 5e-4, 2e-4]}"
    first = _sweep(request, cli_env, base, *data, "--trials", "2", space, "sweep.study=resume-me")
    again = _sweep(request, cli_env, base, *data, "--trials", "3", space, "sweep.study=resume-me")
    assert first.returncode == 0 and again.returncode == 0, again.stderr[-3000:]
    import optuna

    storage = f"sqlite:///{base['tmp'] / 'mlruns' / 'optuna.db'}"
    trials = optuna.load_study(study_name="resume-me", storage=storage).get_trials(deepcopy=False)
    ran = [t.params["train.learning_rate"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(ran) == 3 and len(set(ran)) == 3  # the resumed sweep ran the one setting not yet run


def test_sweep_refuses_invalid_choices_and_storages_before_any_step(request, cli_env, base, toy_csv):
    choices = _sweep(request, cli_env, base, f"data.path={toy_csv}", "sweep.space={train.batch_size: [0, -3]}")
    assert "train.batch_size" in _one_line(choices) and not (base["tmp"] / "cache" / "ingest").exists()
    (base["tmp"] / "toy-store.csv").write_text("a,b\n1,2\n")
    storage = _sweep(request, cli_env, base, f"data.path={toy_csv}", f"sweep.storage=sqlite:///{base['tmp'] / 'toy-store.csv'}")
    assert "sweep.storage" in _one_line(storage) and not (base["tmp"] / "cache" / "ingest").exists()
    damaged = base["tmp"] / "optuna.db"
    with sqlite3.connect(damaged) as db:
        db.execute("create table studies (x int)")  # a database, but not Optuna's
    broken = _sweep(request, cli_env, base, f"data.path={toy_csv}", f"sweep.storage=sqlite:///{damaged}")
    assert "sweep.storage" in _one_line(broken)
