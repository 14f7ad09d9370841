"""runner/data runs on the host and in containers: standard library and numpy only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import runner.data

DATA = Path(runner.data.__file__).parent
ALLOWED_ROOTS = set(sys.stdlib_module_names) | {"numpy"}


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node, node.module


def test_only_stdlib_numpy_and_runner_itself():
    """Two lazy exceptions: rich (fetch's progress bar) and Pillow, imported inside decode.py's
    functions only: JPEG decoding needs it (the framework images carry it), CIFAR never does."""
    lazy_rich, lazy_pil = [], []
    for path in sorted(DATA.rglob("*.py")):
        tree = ast.parse(path.read_text())
        top_level = {id(n) for n in tree.body}
        for node, module in _imports(tree):
            root = module.split(".")[0]
            if root == "runner":
                assert module in ("runner.errors", "runner.fileio") or module.startswith("runner.data"), (path, module)
            elif root == "rich":
                assert path.name == "fetch.py" and id(node) not in top_level, (path, module)
                lazy_rich.append(module)
            elif root == "PIL":
                assert path.name == "decode.py" and id(node) not in top_level, (path, module)
                lazy_pil.append(module)
            else:
                assert root in ALLOWED_ROOTS, f"{path.name} imports {module}"
    assert lazy_rich == ["rich.progress"]
    assert lazy_pil and set(lazy_pil) <= {"PIL", "PIL.Image"}


def test_importing_the_package_loads_no_framework_or_host_library():
    code = ("import sys, runner.data, runner.data.loader, runner.data.fetch, runner.data.image_loader, "
            "runner.data.imagenet, runner.data.synth_imagenet, runner.data.imagenet_prepare; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'tensorflow', 'pydantic', 'rich', 'yaml', 'typer', 'pyarrow', 'docker', 'PIL'}); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_cli_module_imports_no_numpy_at_start_up():
    code = "import sys, runner.cli.data; print('numpy' in sys.modules, 'runner.data' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
