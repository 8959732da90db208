import json

import pytest

from tasks.cache import MANIFEST, StepCache, cache_report, fingerprint


def test_fingerprint_is_stable_and_order_free():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint("x", 1) != fingerprint("x", 2)


def _writer(calls):
    def make(folder):
        calls.append(folder)
        (folder / "data.txt").write_text("payload")
        return {"n": len(calls)}

    return make


def test_second_build_reuses_the_entry(tmp_path):
    calls = []
    first = StepCache(tmp_path, "step", "k1").build(_writer(calls))
    second = StepCache(tmp_path, "step", "k1").build(_writer(calls))
    assert len(calls) == 1
    assert (first.reused, second.reused) == (False, True)
    assert second.meta == {"n": 1}
    assert (second.path / "data.txt").read_text() == "payload"


def test_refresh_rebuilds(tmp_path):
    calls = []
    StepCache(tmp_path, "step", "k1").build(_writer(calls))
    entry = StepCache(tmp_path, "step", "k1").build(_writer(calls), refresh=True)
    assert len(calls) == 2 and not entry.reused


def test_corrupted_entry_is_rebuilt_not_loaded(tmp_path):
    calls = []
    entry = StepCache(tmp_path, "step", "k1").build(_writer(calls))
    (entry.path / "data.txt").write_text("tampered")
    again = StepCache(tmp_path, "step", "k1").build(_writer(calls))
    assert len(calls) == 2 and not again.reused
    assert (again.path / "data.txt").read_text() == "payload"


def test_entry_without_manifest_is_a_miss(tmp_path):
    folder = tmp_path / "step" / "k1"
    folder.mkdir(parents=True)
    (folder / "data.txt").write_text("half written")
    assert StepCache(tmp_path, "step", "k1").load() is None


def test_failed_build_leaves_nothing(tmp_path):
    def boom(folder):
        (folder / "partial").write_text("x")
        raise RuntimeError("step failed")

    with pytest.raises(RuntimeError):
        StepCache(tmp_path, "step", "k1").build(boom)
    assert list((tmp_path / "step").iterdir()) == []


def test_manifest_records_checksums_and_report_counts(tmp_path):
    entry = StepCache(tmp_path, "step", "k1").build(_writer([]))
    manifest = json.loads((entry.path / MANIFEST).read_text())
    assert set(manifest["files"]) == {"data.txt"}
    assert cache_report(tmp_path) == [("step", 1, sum(f.stat().st_size for f in entry.path.iterdir()))]
