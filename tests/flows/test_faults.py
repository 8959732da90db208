"""A tracking store on a disk that is read-only or fills up, through the real CLI: one `error:` line, no traceback,
nothing registered. The disks are real (tmpfs mounts), so these tests skip where mounting is not allowed."""

import shutil
import subprocess
import sys

from mlflow import MlflowClient


def _run(root, env, args):
    return subprocess.run([sys.executable, "flows/finetune.py", *args], cwd=root, env=env, capture_output=True, text=True, timeout=400)


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_a_read_only_store_is_refused_before_any_work(request, tmp_path, toy_csv, tiny_model_dir, cli_env, empty_store, small_disk):
    disk = small_disk("16m")
    shutil.copy(empty_store, disk / "mlflow.db")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    result = _run(
        request.config.rootpath,
        cli_env,
        [
            f"data.path={toy_csv}",
            f"model.name_or_path={tiny_model_dir}",
            f"tracking.uri=sqlite:///{disk / 'mlflow.db'}",
            f"cache.dir={tmp_path / 'cache'}",
            "registry.model_name=tiny",
        ],
    )
    errors = _error_lines(result)
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "cannot write the tracking store (tracking.uri)" in errors[0] and "Read-only file system" in errors[0]
    assert not (tmp_path / "cache").exists()


def test_a_store_that_fills_up_ends_with_one_line_and_nothing_registered(
    request, tmp_path, toy_csv, tiny_model_dir, cli_env, empty_store, small_disk
):
    # Room for the store and the run's small artifacts, not for the model (~4 MB of weights).
    disk = small_disk(f"{empty_store.stat().st_size // 1024 + 1536}k")
    shutil.copy(empty_store, disk / "mlflow.db")
    uri = f"sqlite:///{disk / 'mlflow.db'}"
    result = _run(
        request.config.rootpath,
        cli_env,
        [
            f"data.path={toy_csv}",
            f"model.name_or_path={tiny_model_dir}",
            f"tracking.uri={uri}",
            f"cache.dir={tmp_path / 'cache'}",
            "registry.model_name=tiny",
            "registry.min_accuracy=0",
            "registry.min_f1=0",
            "train.epochs=1",
            "train.max_length=32",
            "train.precision=fp32",
        ],
    )
    errors = _error_lines(result)
    assert result.returncode == 1 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "a disk is full or read-only" in errors[0] and ("No space left on device" in errors[0] or "disk is full" in errors[0]), errors
    client = MlflowClient(uri, uri)
    assert client.search_registered_models() == [] or not client.search_model_versions("name='tiny'")
    runs = client.search_runs([client.get_experiment_by_name("finetune-flow").experiment_id])
    assert len(runs) == 1 and runs[0].info.status != "FINISHED"
