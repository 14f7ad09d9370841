# runner's recipes. `just --list` shows them. Everything runs from the repo's own .venv.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
bin := venv / "bin"
mxvenv := ".venv-mxnet"
mxnet_pins := "mxnet==1.9.1+numpy==1.23.5+pillow==13.0.0"

# Create .venv with runner, PyTorch and TensorFlow (CPU builds) and the dev tools, and .venv-mxnet
# with MXNet; reruns are cheap.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    [ -x {{bin}}/python ] || python3 -m venv {{venv}}
    stamp={{venv}}/.runner-installed-$(sha256sum pyproject.toml | cut -c1-16)
    if [ ! -e "$stamp" ]; then
      {{bin}}/pip install -q --disable-pip-version-check -e '.[torch,tensorflow,dev,report,sign]' 2>&1 \
        | grep -v '^WARNING: Location' || true
      {{bin}}/python -c 'import runner, torch, tensorflow' >/dev/null 2>&1 || { echo "setup failed"; exit 1; }
      rm -f {{venv}}/.runner-installed-*; touch "$stamp"
    fi
    # MXNet 1.9.1 needs numpy 1.23.5, the frameworks above numpy 2.x: it gets its own venv, which
    # the local engine and the MXNet tests use (runner/engine/interpreters.py).
    mxstamp={{mxvenv}}/.runner-mxnet-{{mxnet_pins}}
    if [ ! -e "$mxstamp" ]; then
      [ -x {{mxvenv}}/bin/python ] || python3 -m venv {{mxvenv}}
      {{mxvenv}}/bin/pip install -q --disable-pip-version-check {{replace(mxnet_pins, "+", " ")}}
      {{mxvenv}}/bin/python -c 'import mxnet' >/dev/null 2>&1 || { echo "setup of {{mxvenv}} failed"; exit 1; }
      rm -f {{mxvenv}}/.runner-mxnet-*; touch "$mxstamp"
    fi

# Images build on the catalog's digest-pinned Debian base, or on the debootstrapped local one
# (.ci/provision.sh) when that exists: no registry is needed then.
# The main job: a small PyTorch-vs-TensorFlow reproduction (docker engine if one answers, else local).
demo: setup
    #!/usr/bin/env bash
    set -euo pipefail
    base=()
    if command -v docker >/dev/null && docker image inspect local/debian:bookworm >/dev/null 2>&1; then
      base=(--base local/debian:bookworm)
    fi
    {{bin}}/runner reproduce experiments/smoke.yaml "${base[@]}"

# Tests that need Docker use the real engine (CI provisions it: .ci/provision.sh).
# All tests but the ppc64le (emulated) ones: what CI runs.
test *ARGS: setup
    {{bin}}/pytest -m "not emulated" {{ARGS}}

# A cold build of the ppc64le image takes 10 min on a quiet 2-core machine (35 min under load) and
# the workload runs at about 1 image/s under qemu: hence not in `just test` (CI's 45 minutes).
# The ppc64le tests, under qemu emulation.
test-emulated *ARGS: setup
    {{bin}}/pytest -m emulated {{ARGS}}

# Fast tests only: no engine, no emulation, no slow learning runs.
test-fast *ARGS: setup
    {{bin}}/pytest -m "not docker and not slow and not emulated" {{ARGS}}

# ruff over the package, the tests and the benchmarks.
lint: setup
    {{bin}}/ruff check runner tests benchmarks

# Every benchmark script; each prints its figures side by side with the target.
bench: setup
    #!/usr/bin/env bash
    set -uo pipefail
    missed=()
    for b in benchmarks/bench_*.py; do
      echo "== $b"
      {{bin}}/python "$b" || missed+=("$b")
    done
    [ ${#missed[@]} -eq 0 ] || { echo "targets missed or benchmark failed: ${missed[*]}"; exit 1; }

# Build the CPU images of the three frameworks (hermetic, from the lockfiles).
images: setup
    {{bin}}/runner images build pytorch-cpu
    {{bin}}/runner images build tensorflow-cpu
    {{bin}}/runner images build mxnet-cpu
