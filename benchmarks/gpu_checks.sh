#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go: the CUDA tests (data on the device, bf16-mixed, DDP over
# NCCL, ablation workers bound to the GPU), then loop_overhead on the GPU in fp32 and bf16-mixed, a
# pack of 256 MLPs against one alone (packed_epoch), the initialization suite (seed 0, 45 runs) on the
# GPU through the vectorized loop, the runner unpacked and the runner packed (ablation_throughput), and
# a pack of 64 LeNets against one alone (packed_epoch --model lenet).
# Run from the repository root on a machine with a GPU; results go to $OUT (default /tmp/gpu-checks).
# The whole script stays within $BUDGET_S seconds (default 470): each step has a cap, and gets at most
# what is left of the budget (a step cut short leaves no JSON; one with under 20 s left is skipped).
# The machines lent here reach no package registry and their image lacks MLflow and jsonargparse: run
# `python benchmarks/gpu_wheels.py` first where pip works, carry .whl, and this installs them (into /tmp/site).
set -uo pipefail
if ! python3 -c "import mlflow, jsonargparse" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "no MLflow or jsonargparse here: run python benchmarks/gpu_wheels.py where pip works and carry .whl" >&2; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # lit_d2l from this tree, installed or not
python3 -c "import lit_d2l.cli.main, mlflow, jsonargparse" || exit 2
out=${OUT:-/tmp/gpu-checks}
budget=${BUDGET_S:-470}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

# Run "$@" with what is left of the budget (at most $1 seconds); a step that runs out leaves no JSON.
within() {
    local cap=$1 left=$((budget - SECONDS))
    shift
    if ((left < 20)); then
        echo "skipped (budget spent): $*" >&2
        return 1
    fi
    timeout "$((left < cap ? left : cap))" "$@"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import sys, torch, lightning, mlflow; print(sys.version.split()[0], torch.__version__, lightning.__version__, mlflow.__version__)" | tee -a "$out/gpu.txt"
within 120 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.txt"
for precision in 32-true bf16-mixed; do
    within 60 python3 benchmarks/loop_overhead.py --accelerator gpu --precision "$precision" --epochs 5 2>&1 | tail -1 | tee "$out/loop_overhead_$precision.json"
done
within 150 python3 benchmarks/packed_epoch.py --accelerator gpu --arms 256 2>&1 | tail -1 | tee "$out/packed_epoch.json"
within 240 python3 benchmarks/ablation_throughput.py --suites initialization --seeds 0 --accelerator gpu \
    --columns vectorized unpacked packed 2>&1 | tail -1 | tee "$out/ablation_throughput_gpu.json"
within 150 python3 benchmarks/packed_epoch.py --accelerator gpu --model lenet --arms 64 2>&1 | tail -1 | tee "$out/packed_epoch_lenet.json"
echo "gpu_checks: ${SECONDS} s" | tee -a "$out/gpu.txt"
