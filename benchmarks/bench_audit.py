"""Issue figures for audit and comparison (wall time, best of N, page cache warm):

    runner bundle verify  vs  sha256sum over the same files    target: ratio <= 1.5
        (a bundle padded with --pad-mb of incompressible data, default 300 MB)
    runner compare over 100 bundles of 50 runs each           target < 3 s
        (load + tables + rich rendering, in process)

Bundles are written by the real BundleWriter from synthetic events (tests/audit/synth.py), no
training. Writing a 50-run bundle takes several seconds, so --distinct bundles are written and
each is copied until there are --bundles of them (the copies are bundles the writer wrote, in
folders of their own). Everything goes under --work (kept, so a second run reuses it).

    .venv/bin/python benchmarks/bench_audit.py [--work /tmp/bench-audit] [--pad-mb 300]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SPEC50 = """\
name: bench
dataset: {name: cifar10, synthetic: {train_size: 256, test_size: 64, seed: 0}}
model: {name: simple_cnn}
frameworks: [pytorch, tensorflow]
repeats: 5
recipe: {epochs: 3, batch_size: 32, optimizer: sgd, lr: 0.05}
measurement: {warmup_steps: 1, latency_batch_sizes: [1, 8], latency_iterations: 10, target_accuracy: 0.3}
sweeps:
  - name: throughput
    grid: {batch_size: [16, 32, 64, 128, 256]}
"""


def best(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def padded_bundle(work: Path, pad_mb: int) -> Path:
    """A finished bundle plus `pad_mb` of random data in files the manifest lists."""
    from runner.audit.verify import hash_file
    from tests.audit.synth import make_bundle

    done = work / "padded.json"
    if done.is_file():
        return Path(json.loads(done.read_text())["path"])
    bundle = make_bundle(work / "padded", spec=SPEC50)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for i in range(max(1, pad_mb // 50)):
        rel = f"environment/padding-{i}.bin"
        with open(bundle / rel, "wb") as fh:
            for _ in range(50):
                fh.write(os.urandom(1 << 20))
        size, sha = hash_file(bundle / rel)
        manifest["files"].append({"path": rel, "size": size, "sha256": sha})
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))
    done.write_text(json.dumps({"path": str(bundle)}))
    return bundle


def many_bundles(work: Path, count: int, distinct: int) -> list[Path]:
    from tests.audit.synth import make_bundle, make_plan

    root = work / "many"
    index = root / "index.json"
    if index.is_file():
        paths = [Path(p) for p in json.loads(index.read_text())]
        if len(paths) == count and all(p.is_dir() for p in paths):
            return paths
        shutil.rmtree(root)
    plan, spec = make_plan(root / "spec", SPEC50)
    originals = []
    for i in range(distinct):
        t0 = time.perf_counter()
        originals.append(make_bundle(root / f"w{i}", spec=spec, plan=plan))
        print(f"  wrote bundle {i + 1}/{distinct} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    paths = list(originals)
    i = 0
    while len(paths) < count:
        src = originals[i % distinct]
        dst = root / f"copy{i}" / src.name
        shutil.copytree(src, dst)
        paths.append(dst)
        i += 1
    index.write_text(json.dumps([str(p) for p in paths]))
    return paths


def bench_verify(bundle: Path) -> dict:
    from runner.audit.verify import verify_bundle

    manifest = json.loads((bundle / "manifest.json").read_text())
    files = [str(bundle / e["path"]) for e in manifest["files"]]
    size = sum(e["size"] for e in manifest["files"])
    result = verify_bundle(bundle)
    assert result.ok, result.problems[:3]
    verify_bundle(bundle)  # warm the page cache for both
    ours = best(lambda: verify_bundle(bundle))
    sha = best(lambda: subprocess.run(["sha256sum", *files], check=True, capture_output=True))
    return {"files": len(files), "mb": size / 1e6, "verify_s": ours, "sha256sum_s": sha, "ratio": ours / sha}


def bench_compare(paths: list[Path]) -> dict:
    from rich.console import Console

    from runner.report.output import rich_table
    from runner.report.write import compare_bundles

    def run():
        report = compare_bundles(paths)
        console = Console(file=io.StringIO(), width=200)
        for table in report.tables:
            console.print(rich_table(table))
        return report

    report = run()
    runs = sum(b["runs"] for b in report.bundles)
    cpu = min(_cpu(run) for _ in range(3))
    code = ("import sys; sys.path.insert(0, '.'); from tests.audit.cli_helpers import ensure_registered; "
            "ensure_registered(); from runner.cli.main import main; main(sys.argv[1:])")
    cli = best(lambda: subprocess.run([sys.executable, "-c", code, "compare", *map(str, paths)], cwd=REPO,
                                      check=True, capture_output=True, env=os.environ | {"COLUMNS": "200"}))
    return {"bundles": len(paths), "runs": runs, "compare_s": best(run), "cpu_s": cpu, "cli_s": cli}


def _cpu(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-audit"))
    parser.add_argument("--pad-mb", type=int, default=300)
    parser.add_argument("--bundles", type=int, default=100)
    parser.add_argument("--distinct", type=int, default=10)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    v = bench_verify(padded_bundle(args.work, args.pad_mb))
    print(f"verify:    {v['files']} files, {v['mb']:.0f} MB: runner {v['verify_s']:.2f} s, sha256sum "
          f"{v['sha256sum_s']:.2f} s, ratio {v['ratio']:.2f} (target <= 1.5)")
    c = bench_compare(many_bundles(args.work, args.bundles, args.distinct))
    print(f"compare:   {c['bundles']} bundles, {c['runs']} runs: {c['compare_s']:.2f} s wall, {c['cpu_s']:.2f} s CPU "
          f"(target < 3 s); `runner compare` as a new process: {c['cli_s']:.2f} s")
    print(f"machine:   {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    ok = v["ratio"] <= 1.5 and c["compare_s"] < 3.0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
