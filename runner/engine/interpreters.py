"""Which Python the local engine runs a framework's workload with.

PyTorch and TensorFlow run in the host's own interpreter (`.venv`). MXNet 1.9.1 cannot share it:
it needs numpy 1.23.5, the other two numpy 2.x. So MXNet has its own venv, `.venv-mxnet` next to
`.venv` in the checkout (`just setup` creates it), or the interpreter `RUNNER_MXNET_PYTHON` names.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.errors import EngineError

# framework -> (environment variable naming its interpreter, venv folder in the checkout)
OWN_VENV = {"mxnet": ("RUNNER_MXNET_PYTHON", ".venv-mxnet")}


def _checkout() -> Path:
    return Path(__file__).resolve().parents[2]


def python_for(framework: str | None, default: str) -> str:
    """The interpreter for `framework`'s workload: `default` unless the framework needs its own."""
    if framework not in OWN_VENV:
        return default
    variable, venv = OWN_VENV[framework]
    named = os.environ.get(variable)
    candidate = Path(named) if named else _checkout() / venv / "bin" / "python"
    if not os.access(candidate, os.X_OK):
        where = f"{variable}={named}" if named else str(candidate)
        raise EngineError(f"no {framework} interpreter for the local engine ({where} is not an executable)",
                          field=variable, fix=f"run `just setup` (creates {venv}) or set {variable}, "
                          "or use --engine docker")
    return str(candidate)


def framework_of(argv: list[str]) -> str | None:
    """The `--framework F` of a workload tool command line (`info`, `models`), if any."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "--framework":
            return argv[i + 1]
    return None
