"""Issue figures for the host CLI: start-up and planning speed (wall time, best of N).

    runner --help                                   target < 0.5 s
    runner plan experiments/vgg16-cifar100.yaml     target < 0.5 s
    planning a 10,000-run grid (in process)         target < 1 s
Also checks that neither command imported torch, tensorflow or mxnet.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNNER = [sys.executable, "-c", "from runner.cli.main import main; main()"]


def best_wall(argv: list[str], n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=REPO, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def imports_framework(args: list[str]) -> bool:
    code = ("import sys; from runner.cli.main import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(any(m in sys.modules for m in ('torch', 'tensorflow', 'mxnet')), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True)
    return out.stderr.strip().splitlines()[-1] == "True"


def grid_spec(path: Path) -> Path:
    base = (REPO / "experiments" / "smoke.yaml").read_text()
    lrs = ", ".join(f"{0.0001 * (i + 1):.4f}" for i in range(100))
    batches = ", ".join(str(8 * (i + 1)) for i in range(50))
    path.write_text(base + f"sweeps:\n  - name: big\n    grid: {{lr: [{lrs}], batch_size: [{batches}]}}\n")
    return path


def main() -> int:
    from runner.spec.plan import plan_file

    rows = []
    help_s = best_wall([*RUNNER, "--help"])
    rows.append(("runner --help", help_s, 0.5))
    plan_s = best_wall([*RUNNER, "plan", "experiments/vgg16-cifar100.yaml"])
    rows.append(("runner plan vgg16-cifar100", plan_s, 0.5))
    with tempfile.TemporaryDirectory() as tmp:
        spec = grid_spec(Path(tmp) / "grid.yaml")
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            plan = plan_file(spec)
            best = min(best, time.perf_counter() - t0)
        assert len(plan.runs) == 10_000, len(plan.runs)
        rows.append(("plan a 10,000-run grid", best, 1.0))
    ok = True
    print(f"{'measurement':34} {'seconds':>8} {'target':>8} {'ratio':>7}  verdict")
    for name, secs, target in rows:
        verdict = "PASS" if secs < target else "FAIL"
        ok &= verdict == "PASS"
        print(f"{name:34} {secs:8.3f} {target:8.2f} {secs / target:7.2f}  {verdict}")
    for args in (["--help"], ["plan", "experiments/vgg16-cifar100.yaml"]):
        leaked = imports_framework(args)
        ok &= not leaked
        print(f"framework imported by `runner {' '.join(args)}`: {'YES (FAIL)' if leaked else 'no (PASS)'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
