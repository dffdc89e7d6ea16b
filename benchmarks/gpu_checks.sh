#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go: the CUDA tests (data on the device, bf16-mixed, DDP over
# NCCL, ablation workers bound to the GPU), then loop_overhead on the GPU in fp32 and bf16-mixed, and a
# pack of 256 MLPs against one alone (packed_epoch).
# Run from the repository root on a machine with a GPU; results go to $OUT (default /tmp/gpu-checks).
set -uo pipefail
out=${OUT:-/tmp/gpu-checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import sys, torch, lightning, mlflow; print(sys.version.split()[0], torch.__version__, lightning.__version__, mlflow.__version__)" | tee -a "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.txt"
for precision in 32-true bf16-mixed; do
    python3 benchmarks/loop_overhead.py --accelerator gpu --precision "$precision" --epochs 5 2>&1 | tail -1 | tee "$out/loop_overhead_$precision.json"
done
python3 benchmarks/packed_epoch.py --accelerator gpu --arms 256 2>&1 | tail -1 | tee "$out/packed_epoch.json"
