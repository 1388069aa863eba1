#!/usr/bin/env bash
# The one prepared run for a GPU machine (the performance issue asks for it
# whenever one is lent): what the machine is, the gradient-agreement tests on the
# GPU, then the benchmark with torch on CUDA beside rnnbptt and Flax.
#
# It uses the Python that is already there (jax with CUDA, torch, flax, optax,
# pandas and pytest) and installs nothing: the checkout is put on PYTHONPATH, and
# the benchmark runs as its script, experiments/benchmark.py (the same options and
# results as `rnnbptt bench`, which imports rnnbptt.experiments: an install).
# Results go to $OUT (default runs/gpu): log.txt (machine, tests, benchmark
# output) and benchmark/ (metrics.csv, summary.json, ...): seven files.
#
#   bash experiments/gpu_check.sh            # tests, then the full benchmark
#   QUICK=1 bash experiments/gpu_check.sh    # a dry run of every step (CPU too)
#
# The device tool gives one command at most 10 minutes, so each step has its own
# limit (200 s for the tests, 330 s for the benchmark, medians of 9 there): run it
# with timeout_s=600. Exit status: 0 when the tests passed and the benchmark
# ran, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/gpu}
mkdir -p "$out"
log="$out/log.txt"
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Several test processes share one GPU: no process may take most of its memory.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

tests=(tests/test_bptt.py tests/test_unroll.py tests/test_gradcheck.py
    tests/test_recompute_every.py)
workers=4
bench=(--repeats 9 --torch-device cuda)
# On the GPU machine, JAX must not fall back to the CPU with only a warning.
export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
if [ -n "${QUICK:-}" ]; then
    unset JAX_PLATFORMS
    tests=(tests/test_bptt.py)
    workers=2
    bench=(--quick)
fi

{
    date -u
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    else
        echo "nvidia-smi: not here"
    fi
    "$py" -c 'import sys, jax; print(sys.version); print("jax", jax.__version__, jax.devices())'
} 2>&1 | tee "$log"

status=0
if [ -z "${QUICK:-}" ]; then  # a "GPU check" that ran on the CPU must not pass
    "$py" -c 'import jax, torch; assert jax.default_backend() == "gpu", jax.devices(); assert torch.cuda.is_available(), "torch sees no CUDA"' 2>&1 |
        tee -a "$log" || { echo "== not on a GPU: stopping" | tee -a "$log"; exit 1; }
fi
echo "== gradient agreement: ${tests[*]}" | tee -a "$log"
timeout 200 "$py" -m pytest -q -p no:cacheprovider -o addopts="" \
    -n "$workers" "${tests[@]}" 2>&1 | tee -a "$log" || status=1

echo "== benchmark" | tee -a "$log"
timeout 330 "$py" experiments/benchmark.py "${bench[@]}" --out "$out" 2>&1 |
    tee -a "$log" || status=1

echo "== exit status $status" | tee -a "$log"
exit "$status"
