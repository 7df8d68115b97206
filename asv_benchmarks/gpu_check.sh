#!/usr/bin/env bash
# Everything a session lent a GPU machine runs, in one call (device time is short; each stage has a timeout):
#   device run: bash asv_benchmarks/gpu_check.sh [stage ...]   (stages: check tests estimators peers; default all)
# Within one 600 s call the default fits with little to spare: on a second call, name the stages still missing.
# Installs minitrain into the machine's Python (its image has cupy, numba, torch, scikit-learn, tqdm,
# safetensors), then: the CuPy backend's conformance suite, the GPU tests, the backend-parametrized tests on
# cupy, the estimator tests with MINITRAIN_BACKEND=cupy, and peers.py's GPU section. Reports go to $OUT (or
# ./gpu_out) for docs/performance.md.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-gpu_out}"
mkdir -p "$out"
want="${*:-check tests estimators peers}"
stage() { echo; echo "=== $1 ($(date -u +%H:%M:%S))"; }
wanted() { case " $want " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

stage "device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/device.txt"
python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -3
python -c "import minitrain as mt; print(mt.list_backends())" | tee -a "$out/device.txt"

if wanted check; then
stage "check_backend on cupy, float32 and float64"
timeout 120 python -c "
from minitrain.testing import check_backend
check_backend('cupy')
print('check_backend(cupy): passed')" 2>&1 | tail -40 | tee "$out/check_backend.txt"
fi

if wanted tests; then
stage "GPU tests and backend-parametrized tests on cupy"
timeout 100 python -m pytest -q -p no:cacheprovider -x tests/test_cupy.py 2>&1 | tail -15 | tee "$out/pytest_cupy.txt"
timeout 150 python -m pytest -q -p no:cacheprovider -k "cupy" tests/test_backend.py tests/test_conformance.py \
    tests/test_conv.py tests/test_recurrent.py tests/test_functional.py tests/test_nn.py tests/test_optim.py \
    2>&1 | tail -15 | tee "$out/pytest_param.txt"
fi

if wanted estimators; then
stage "estimator tests with MINITRAIN_BACKEND=cupy"
MINITRAIN_BACKEND=cupy timeout 120 python -m pytest -q -p no:cacheprovider tests/test_mlp.py \
    tests/test_neuralnet.py tests/test_mlp_pipeline.py 2>&1 | tail -15 | tee "$out/pytest_estimators.txt"
fi

if wanted peers; then
stage "peers.py GPU section"
timeout 90 python asv_benchmarks/peers.py --gpu --no-training --repeats 5 --markdown "$out/peers_gpu.md" 2>&1 \
    | tail -40
fi
stage "done"
