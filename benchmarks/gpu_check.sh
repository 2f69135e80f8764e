#!/usr/bin/env bash
# Everything that needs a GPU, in one command, under 10 minutes on one GPU (issue 14):
#   bash benchmarks/gpu_check.sh
# 1. the tests that run their CUDA cases only where CUDA is present (decode kernels, file
#    format, the pipeline's device handling); 2. the decode benchmark, whose CUDA rows and
#    floor are recorded in BENCHMARKS.md; 3. one LeNet-5 pipeline on CUDA against the CPU
#    (benchmarks/gpu_check.py, section gpu-check). CI never has a GPU, so none of this runs there.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make setup
.venv/bin/python -c 'import sys, torch; torch.cuda.is_available() or sys.exit("gpu_check: torch sees no CUDA device"); print("gpu_check:", torch.cuda.get_device_name(0))'
.venv/bin/pytest -q -p no:cacheprovider tests/core/test_torch_decode.py \
  tests/core/test_fileformat_ribbon.py tests/core/test_fileformat.py tests/core/test_pipeline.py
.venv/bin/python benchmarks/bench_decode.py --runs 5
.venv/bin/python benchmarks/gpu_check.py
