"""Where trials run: the task runner a sweep's config asks for."""

import pytest

from flows.sweep_runners import task_runner
from schemas.config import load_config
from schemas.errors import ConfigError


def test_ray_runner_without_prefect_ray_is_one_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name.startswith("prefect_ray"):
            raise ImportError("No module named 'prefect_ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r"pip install prefect-ray==0\.6\.0 'ray\[default\]==2\.60\.0'"):
        task_runner(load_config(None, ["sweep.runner=ray"]).sweep)
