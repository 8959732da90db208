#!/usr/bin/env bash
# The GPU figures of bench/README.md: bench/throughput.py on a GPU, bf16, the default model's shape and a
# BERT-base-size model (random weights: these runs measure speed, not accuracy), at the default batch of 32 and
# at a GPU-sized batch of 256, on the reviews as they are (~27 tokens) and joined four to a text (~110 tokens).
#
#   bash bench/gpu.sh [LOG_FOLDER] [profile|auto]     (PYTHON=... another interpreter than .venv/bin/python;
#                                                    RUN_TIMEOUT=seconds a run, default 300)
#
# Each run prints its figures and a JSON line; the logs go to LOG_FOLDER (default bench-gpu/). With `profile`,
# torch.profiler's view of 10 training steps of the default model's shape (bf16 and fp32) and of BERT-base instead;
# with `auto`, the default model's shape and BERT-base at --batch-size auto (train.batch_size=auto's pick) instead.
set -u
py=${PYTHON:-.venv/bin/python}
logs=${1:-bench-gpu}
mkdir -p "$logs"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$py" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'

run() {
    local name=$1
    shift
    echo "=== $name: bench/throughput.py $*"
    local started=$SECONDS
    timeout "${RUN_TIMEOUT:-300}" "$py" bench/throughput.py "$@" >"$logs/$name.log" 2>&1
    echo "exit $? after $((SECONDS - started)) s"
    grep -E '^(GPU|model|baseline|ours|ratio|Traceback|[A-Za-z]*Error)|^\{|^profile of|^  ' "$logs/$name.log"
}

if [ "${2:-}" = auto ]; then  # train.batch_size=auto: the largest batch of the ladder that fits, for both sides
    run minilm-auto --random-init --train-rows 16000 --batch-size auto
    run bert-base-auto-long --config bert-base --train-rows 16000 --batch-size auto --join 4 --skip-baseline
    exit 0
fi

if [ "${2:-}" = profile ]; then
    run minilm-profile --random-init --train-rows 8000 --skip-baseline --profile --variant precision=fp32
    run bert-base-b256-long-profile --config bert-base --train-rows 16000 --batch-size 256 --join 4 --skip-baseline --profile
    exit 0
fi

run bert-base-b256-long --config bert-base --train-rows 16000 --batch-size 256 --join 4 --skip-baseline
run minilm --random-init --train-rows 8000
run bert-base --config bert-base --train-rows 8000
run minilm-b256-long --random-init --train-rows 16000 --batch-size 256 --join 4 --skip-baseline
