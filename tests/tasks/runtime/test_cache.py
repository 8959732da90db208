import json

import pytest

from tasks.runtime.cache import MANIFEST, StepCache, cache_report, fingerprint


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
    assert [p for p in (tmp_path / "step").iterdir() if p.is_dir()] == []


def test_manifest_records_checksums_and_report_counts(tmp_path):
    entry = StepCache(tmp_path, "step", "k1").build(_writer([]))
    manifest = json.loads((entry.path / MANIFEST).read_text())
    assert set(manifest["files"]) == {"data.txt"}
    assert cache_report(tmp_path) == [("step", 1, sum(f.stat().st_size for f in entry.path.iterdir()))]


def test_concurrent_builds_of_one_key_build_once(tmp_path):
    import threading
    import time

    calls = []

    def slow(folder):
        time.sleep(0.3)
        return _writer(calls)(folder)

    results = []
    threads = [threading.Thread(target=lambda: results.append(StepCache(tmp_path, "step", "k1").build(slow))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert sorted(r.reused for r in results) == [False, True, True]


def test_leftovers_of_a_killed_build_are_swept(tmp_path):
    leftover = tmp_path / "step" / ".tmp-k1-deadbeef"
    leftover.mkdir(parents=True)
    (leftover / "half").write_text("x")
    StepCache(tmp_path, "step", "k1").build(_writer([]))
    assert not leftover.exists()
