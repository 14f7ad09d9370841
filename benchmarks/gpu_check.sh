#!/usr/bin/env bash
# The ONE prepared check for a lent GPU machine (issue 10): device augmentation equal to the host
# path on CUDA, then benchmarks/bench_gpu.py (harness vs bare loop), everything written under $OUT.
#
#   here, once:            benchmarks/gpu_check.sh prepare      # wheels the GPU machine lacks -> .gpu/whl
#   on the GPU machine:    OUT=/some/dir benchmarks/gpu_check.sh [extra bench_gpu.py flags]
#                          (the device tool sets $OUT; send .gpu along: it is git-ignored, so name it
#                          in the tool's carry: command "bash benchmarks/gpu_check.sh", carry [".gpu"],
#                          timeout_s 420)
#   a dry run here:        OUT=/tmp/gc PYTHON=.venv/bin/python benchmarks/gpu_check.sh --device cpu \
#                              --batches 8 --steps 3 --warmup 1 --imagenet-batch 2
#
# The GPU machine (shared/notes/gpu-check.md) has Python 3.12 with PyTorch (CUDA), numpy, PyYAML,
# pyarrow; no Docker, no TensorFlow, no pydantic, no pytest, no network. `prepare` downloads
# pydantic (runner.spec plans bench_gpu's runs) and pytest as Python 3.12 wheels; the check
# installs them with --no-index into a scratch folder (docker: the host side's imports). Sized to
# finish in under 7 minutes: the CUDA tests take about 20 s; one `runner reproduce` of a 4-run
# CUDA spec (fp32/bf16 x channels_last, --engine local) at most REPRODUCE_TIMEOUT_S; bench_gpu starts no new measurement after BENCH_BUDGET_S
# seconds and is stopped (SIGTERM) at BENCH_TIMEOUT_S: it then kills the run in flight and still
# prints and writes what it measured by then.
# Exit status: 0 when the tests pass and every target is met, 1 otherwise.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELS="$REPO/.gpu/whl"
PYTHON=${PYTHON:-python3}
BENCH_BUDGET_S=200      # no new measurement after this (bench_gpu --budget-s)
BENCH_TIMEOUT_S=250     # hard stop for bench_gpu.py
TEST_TIMEOUT_S=150
REPRODUCE_TIMEOUT_S=150  # 4 small runs (2 epochs x 20 steps each)

# Pinned to what the repo's own venv runs; pydantic-core must match pydantic's METADATA.
PY_WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
           typing-extensions==4.16.0 pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 packaging==26.4
           pygments==2.21.0 docker==7.2.0)

if [[ "${1:-}" == "prepare" ]]; then
    mkdir -p "$WHEELS"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" "${PY_WHEELS[@]}" || exit 2
    grep -qs '^/.gpu/$' "$REPO/.git/info/exclude" || { mkdir -p "$REPO/.git/info"; echo '/.gpu/' >> "$REPO/.git/info/exclude"; }
    ls "$WHEELS"
    exit 0
fi

: "${OUT:?set OUT to the folder that comes back}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
cd "$REPO" || exit 2
started=$SECONDS
step() { echo; echo "== $* ($((SECONDS - started)) s)"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/nvidia-smi.txt" \
    || echo "nvidia-smi not found"
"$PYTHON" -c 'import sys, numpy, torch; print("python", sys.version.split()[0], "numpy", numpy.__version__,
"torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' || exit 2

step "wheels the machine lacks"
SITE=$(mktemp -d /tmp/gpu-check-site.XXXXXX)
if "$PYTHON" -c 'import pydantic, pytest' 2> /dev/null; then
    echo "pydantic and pytest already import: nothing to install"
elif compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl || exit 2
    echo "installed $(ls "$WHEELS" | wc -l) wheels into $SITE"
else
    echo "no pydantic/pytest and no $WHEELS: run 'benchmarks/gpu_check.sh prepare' before sending the tree"
    exit 2
fi
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c 'import pydantic, yaml, pytest; print("pydantic", pydantic.VERSION, "pytest", pytest.__version__)' || exit 2

step "device augmentation == host path, prefetcher (tests/workload/test_device_augment.py, CPU and CUDA)"
timeout "$TEST_TIMEOUT_S" "$PYTHON" -m pytest -q -rs -s -p no:cacheprovider tests/workload/test_device_augment.py \
    > "$OUT/test_device_augment.txt" 2>&1
tests_rc=$?
grep -E "ulp|passed|failed|error" "$OUT/test_device_augment.txt" | tail -25
echo "tests exit $tests_rc"

step "runner reproduce of a small CUDA spec, --engine local (read_every_steps, CUDA-event timing, memory)"
SPEC="$OUT/cuda-small.yaml"
cat > "$SPEC" <<'YAML'
name: gpu-check-small
dataset: {name: cifar10, synthetic: {train_size: 5120, test_size: 1024}}
model: {name: resnet50, stem: cifar}
frameworks: [pytorch]
variant: cuda
resources: {gpus: 1}
recipe: {epochs: 2, batch_size: 256, optimizer: sgd, lr: 0.1, optimizer_params: {momentum: 0.9},
         augmentation: [{op: random_crop, padding: 4}, {op: horizontal_flip, p: 0.5}]}
measurement: {warmup_steps: 5, read_every_steps: 10}
sweeps:
  - {name: options, grid: {precision: [fp32, amp_bf16], channels_last: [false, true]}}
YAML
timeout "$REPRODUCE_TIMEOUT_S" "$PYTHON" -c 'from runner.cli.main import main; main()' reproduce "$SPEC" \
    --engine local --results "$OUT/results" --cache "$OUT/cache" --data-root "$OUT/data" > "$OUT/reproduce.txt" 2>&1
reproduce_rc=$?
tail -30 "$OUT/reproduce.txt"
echo "reproduce exit $reproduce_rc"
rm -rf "$OUT/cache" "$OUT/data"

step "bench_gpu.py"
timeout "$BENCH_TIMEOUT_S" "$PYTHON" benchmarks/bench_gpu.py --budget-s "$BENCH_BUDGET_S" \
    --json "$OUT/bench_gpu.json" --keep "$OUT/runs" "$@"
bench_rc=$?
[[ $bench_rc == 124 ]] && echo "bench_gpu.py stopped at ${BENCH_TIMEOUT_S} s (its figures so far are above)"

step "done: tests exit $tests_rc, reproduce exit $reproduce_rc, bench_gpu exit $bench_rc"
rm -rf "$SITE"
[[ $tests_rc == 0 && $reproduce_rc == 0 && $bench_rc == 0 ]]
