"""The bad-input battery through the real entry point: `python flows/finetune.py ...` as a user runs it.

Each error case must end with one `error:` line that says what is wrong and which option fixes
it, exit code 2, no traceback, and nothing registered. Row-level problems must be quarantined
with a reason and counted, and the run must still train and register.
"""

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from tests.conftest import toy_frame


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, pd.DataFrame):
        content.to_csv(path, index=False)
    else:
        path.write_text(content)
    return path


def _two_classes(n_pos, n_neg):
    return pd.DataFrame(
        {
            "text": [f"pos text {i}" for i in range(n_pos)] + [f"neg text {i}" for i in range(n_neg)],
            "label": ["pos"] * n_pos + ["neg"] * n_neg,
        }
    )


def _parquet(frame):
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _classes(n_classes, n_per_class):
    return pd.DataFrame(
        {
            "text": [f"class {c} text {i}" for c in range(n_classes) for i in range(n_per_class)],
            "label": [f"c{c}" for c in range(n_classes) for _ in range(n_per_class)],
        }
    )


# name: (file name, content, extra options, expected error line as a regex)
ERROR_CASES = {
    "missing file": (
        "absent.csv",
        None,
        [],
        r"error: data file '.*absent.csv' not found: set data.path to an existing CSV/TSV/JSONL/Parquet file or folder",
    ),
    "empty file": ("empty.csv", "", [], r"error: 'empty.csv' is empty: it has no header and no rows"),
    "header only": ("header.csv", "text,label\n", [], r"error: 'header.csv' has a header but no data rows"),
    "wrong columns": (
        "cols.csv",
        "review,stars\ngood,5\n",
        [],
        r"error: column 'text' not found in 'cols.csv'; columns are \['review', 'stars'\]: set data.text_column",
    ),
    "single class": (
        "one.csv",
        _two_classes(12, 0),
        [],
        r"error: only one class \('pos'\) in the data: a classifier needs at least two labels",
    ),
    "class too small": ("small.csv", _two_classes(12, 2), [], r"error: .*'neg' has 2.*needs at least 3"),
    "binary file": (
        "model.csv",
        b"PK\x03\x04\x00\x00\x00binary",
        [],
        r"error: 'model.csv' looks binary \(NUL bytes in its first 8 KB\), not csv text: .*data.format",
    ),
    "labels not in data": (
        "labels.csv",
        _two_classes(12, 12),
        ["data.labels=[pos,neg,meh]"],
        r"error: data.labels names \['meh'\] but no clean row has them; labels found: \['neg', 'pos'\]",
    ),
    "regression target of words": (
        "words.csv",
        _two_classes(12, 12),
        ["task=regression"],
        r"error: no usable rows: all 24 rows were quarantined \(\{'non_numeric_target': 24\}\)",
    ),
    "constant regression target": (
        "flat.csv",
        _two_classes(12, 12).assign(label="2.5"),
        ["task=regression"],
        r"error: the target is constant \(2.5\) in every clean row: regression needs values that vary",
    ),
    "multi-label without positives": (
        "none.csv",
        _two_classes(6, 6).assign(a=0, b=0).drop(columns="label"),
        ["task=multi_label", "data.label_columns=[a,b]"],
        r"error: no clean row has any label: .*data.label_columns",
    ),
    "label lists for classification": (
        "lists.jsonl",
        "\n".join(json.dumps({"text": f"t {i}", "label": ["a", "b"]}) for i in range(6)),
        [],
        r"error: column 'label' in 'lists.jsonl' holds lists of labels: set task=multi_label",
    ),
    "split column without validation": (
        "given.csv",
        _two_classes(6, 6).assign(part=["train", "test"] * 6),
        ["data.split_column=part"],
        r"error: data.split_column 'part' gives no validation rows \(\{'train': 6, 'validation': 0, 'test': 6\}\)",
    ),
    "option of another task": (
        "opt.csv",
        _two_classes(6, 6),
        ["data.label_columns=[a,b]"],
        r"error: invalid config: data.label_columns is for task=multi_label, not task=classification",
    ),
    "gate on another task's metric": (
        "gate.csv",
        _two_classes(6, 6),
        ["registry.gates={rmse: 1.0}"],
        r"error: invalid config: registry.gates / registry.compare_on name \['rmse'\], not metrics of task=classification",
    ),
    "wrong encoding": (
        "cp1252.csv",
        "text,label\n\u201chi\u201d,pos\n\u2019yo,neg\nok,pos\n".encode("cp1252"),
        [],
        r"error: 'cp1252.csv' is not utf-8 text: line 2 \(bytes b'\\x93'\) does not decode, and 2 of 3 rows have such bytes; set data.encoding",
    ),
    "duplicate columns": (
        "dup.csv",
        "text,label,text\na,pos,b\nc,neg,d\n",
        [],
        r"error: 'dup.csv' repeats column names \['text'\] in its header: give every column its own name",
    ),
    "nested text": (
        "nested.parquet",
        _parquet(pd.DataFrame({"text": [[f"w{i}", "x"] for i in range(12)], "label": ["pos", "neg"] * 6})),
        [],
        r"error: column 'text' in 'nested.parquet' holds nested values \(lists, e.g. \['w0', 'x'\]\), not plain values: .*set data.text_column",
    ),
    "max_rows below classes": (
        "many.csv",
        _classes(10, 6),
        ["data.max_rows=20"],
        r"error: data.max_rows=20 is too small for 10 classes: .*set data.max_rows >= 30",
    ),
}


def _run(root, env, args):
    return subprocess.run([sys.executable, "flows/finetune.py", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_every_bad_input_is_one_clear_line_exit_2_nothing_registered(request, tmp_path, tiny_model_dir, cli_env, new_store):
    jobs, uri = {}, new_store(tmp_path / "mlruns")
    for name, (file_name, content, extra, _) in ERROR_CASES.items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        path = folder / file_name if content is None else _write(folder / file_name, content)
        jobs[name] = [
            f"data.path={path}",
            f"model.name_or_path={tiny_model_dir}",
            f"tracking.uri={uri}",
            f"cache.dir={folder / 'cache'}",
            "registry.model_name=tiny",
            *extra,
        ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(lambda args: _run(request.config.rootpath, cli_env, args), jobs.values())))
    problems = []
    for name, result in results.items():
        pattern = ERROR_CASES[name][3]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        if result.returncode != 2:
            problems.append(f"{name}: exit {result.returncode}")
        if len(errors) != 1 or not re.match(pattern, errors[0]):
            problems.append(f"{name}: error lines {errors} do not match {pattern!r}")
        if "Traceback" in result.stderr + result.stdout:
            problems.append(f"{name}: traceback shown")
    assert not problems, "\n".join(problems)
    client = MlflowClient(uri, uri)
    assert client.search_registered_models() == []
    runs = client.search_runs([client.get_experiment_by_name("finetune-flow").experiment_id])
    config_errors = sum("invalid config" in case[3] for case in ERROR_CASES.values())  # refused before any run starts
    assert len(runs) == len(ERROR_CASES) - config_errors and {r.info.status for r in runs} == {"FAILED"}


def test_row_level_problems_are_quarantined_counted_and_the_run_trains(request, tmp_path, tiny_model_dir, cli_env, new_store):
    good = toy_frame(n_per_class=30)
    long_text = " ".join(["great"] * 1500)  # far over max_length 32, and pushes what follows past the first 8 KB
    lines = (
        ["text,label"]
        + [f"{t},{lab}" for t, lab in zip(good["text"], good["label"])]
        + [
            ",pos",  # null text
            "   ,neg",  # whitespace-only text
            "orphan text,",  # null label
            f"{good['text'][0]},{good['label'][0]}",  # exact duplicate
            "contested,pos",
            "contested,neg",  # same text, two labels
            "a number label,1",  # mixed label types (words win)
            f"{long_text},pos",  # kept, truncated
            "\u200b\ufeff,neg",  # nothing visible: empty text
            "before \x00 after,pos",  # a NUL byte past the first 8 KB
        ]
    )
    data = tmp_path / "messy.csv"
    data.write_bytes(("\n".join(lines) + "\n").encode() + b"caf\xe9 society,neg\n")  # one undecodable row
    summary_path = tmp_path / "summary.json"
    result = _run(
        request.config.rootpath,
        cli_env,
        [
            f"data.path={data}",
            f"model.name_or_path={tiny_model_dir}",
            f"tracking.uri={new_store(tmp_path / 'mlruns')}",
            f"cache.dir={tmp_path / 'cache'}",
            "registry.model_name=tiny",
            "registry.min_accuracy=0",
            "registry.min_f1=0",
            "registry.beat_baseline=false",
            "train.epochs=1",
            "train.max_length=32",
            "train.precision=fp32",
            f"--summary-json={summary_path}",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    expected = {
        "null_text": 1,
        "empty_text": 2,
        "null_label": 1,
        "duplicate": 1,
        "conflicting_labels": 2,
        "mixed_label_type": 1,
        "undecodable_bytes": 1,
        "nul_byte": 1,
    }
    assert summary["quarantine_reasons"] == expected
    assert summary["rows_in"] == 71 == summary["rows_kept"] + summary["rows_quarantined"] and summary["rows_quarantined"] == 10
    assert summary["texts_truncated"] == 1 and summary["promoted"]
    quarantine = pd.read_csv(summary["quarantine_file"], keep_default_na=False)
    assert quarantine["reason"].value_counts().to_dict() == expected
    assert quarantine.loc[quarantine["reason"] == "undecodable_bytes", "text"].tolist() == ["caf\\xe9 society"]
    assert quarantine.loc[quarantine["reason"] == "nul_byte", "text"].tolist() == ["before \\x00 after"]
    assert f"quarantine   {summary['quarantine_file']}" in result.stdout
    assert "truncated    1 texts longer than train.max_length" in result.stdout
    report = json.loads(Path(summary["data_report"]).with_suffix(".json").read_text())
    assert report["tokens"]["train"]["truncated"] + report["tokens"]["validation"]["truncated"] + report["tokens"]["test"]["truncated"] == 1


# Options that pass their type but would fail later (after training, or after a version was tagged): refused before any work.
CONFIG_CASES = {
    "path-like model name": (
        ["registry.model_name=../../x"],
        r"error: invalid config: registry.model_name: model name '../../x' is not allowed: use 1-100 letters, digits",
    ),
    "quote in model name": (
        ["registry.model_name=it's"],
        r"error: invalid config: registry.model_name: model name \"it's\" is not allowed: .*no spaces, quotes or '/'",
    ),
    "reserved alias": (
        ["registry.alias=v1"],
        r"error: invalid config: registry.alias: alias 'v1' is not allowed: .*not 'latest', 'v<number>' or 'version<number>'",
    ),
    "infinite epochs": (["train.epochs=.inf"], r"error: invalid config: train.epochs: Input should be a finite number"),
    "negative seed": (["seed=-1"], r"error: invalid config: seed: Input should be greater than or equal to 0"),
}


def test_bad_config_is_refused_before_any_work(request, tmp_path, toy_csv, tiny_model_dir, cli_env):
    jobs = {
        name: [
            f"data.path={toy_csv}",
            f"model.name_or_path={tiny_model_dir}",
            f"tracking.uri=sqlite:///{tmp_path / name.replace(' ', '_') / 'mlflow.db'}",
            f"cache.dir={tmp_path / name.replace(' ', '_') / 'cache'}",
            *extra,
        ]
        for name, (extra, _) in CONFIG_CASES.items()
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(lambda args: _run(request.config.rootpath, cli_env, args), jobs.values())))
    problems = []
    for name, result in results.items():
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        if result.returncode != 2 or len(errors) != 1 or not re.match(CONFIG_CASES[name][1], errors[0]) or "Traceback" in result.stderr:
            problems.append(f"{name}: exit {result.returncode}, error lines {errors}, stderr tail {result.stderr[-300:]!r}")
        if (tmp_path / name.replace(" ", "_")).exists():
            problems.append(f"{name}: something was written (store or cache) before the config was refused")
    assert not problems, "\n".join(problems)


def test_unwritable_outputs_are_refused_before_any_work(request, tmp_path, toy_csv, tiny_model_dir, cli_env, new_store):
    root, blocker = request.config.rootpath, tmp_path / "a-file"
    blocker.write_text("not a folder")
    uri = new_store(tmp_path / "mlruns")
    base = [f"data.path={toy_csv}", f"model.name_or_path={tiny_model_dir}", f"cache.dir={tmp_path / 'cache'}", "registry.model_name=tiny"]
    cases = {
        "summary": (
            _run,
            [*base, f"tracking.uri={uri}", f"--summary-json={blocker / 'summary.json'}"],
            r"error: cannot write --summary-json '.*a-file/summary.json': '.*a-file' is a file, not a folder",
        ),
        "store": (
            _run,
            [*base, f"tracking.uri=sqlite:///{blocker / 'mlflow.db'}"],
            r"error: cannot write the tracking store \(tracking.uri\) '.*a-file/mlflow.db': '.*a-file' is a file, not a folder",
        ),
        "predict output": (
            lambda r, e, args: subprocess.run(
                [sys.executable, "flows/predict.py", *args], cwd=r, env=e, capture_output=True, text=True, timeout=300
            ),
            [str(toy_csv), str(blocker / "out.csv"), "--name", "tiny", "--tracking-uri", uri],
            r"error: cannot write the output file '.*a-file/out.csv': '.*a-file' is a file, not a folder",
        ),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(cases, pool.map(lambda case: case[0](root, cli_env, case[1]), cases.values())))
    problems = []
    for name, result in results.items():
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        if result.returncode != 2 or len(errors) != 1 or not re.match(cases[name][2], errors[0]) or "Traceback" in result.stderr:
            problems.append(f"{name}: exit {result.returncode}, error lines {errors}, stderr tail {result.stderr[-500:]!r}")
    assert not problems, "\n".join(problems)
    assert not (tmp_path / "cache").exists(), "a step ran before the output path was checked"
    client = MlflowClient(uri, uri)
    assert client.search_registered_models() == [] and client.get_experiment_by_name("finetune-flow") is None
