"""MXNet's bfloat16 runs need AVX-512 (oneDNN's bf16 kernels): on a CPU without it the spec field
cannot take effect, so `runner reproduce` refuses it before anything runs, naming recipe.precision;
the workload refuses too (a run placed by Slurm on such a node is a failed row saying why)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.reproduce import cpu_check
from runner.reproduce.cpu_check import check_cpu_here
from runner.spec.plan import plan_file
from runner.workload.cpu_isa import cpu_flags, mxnet_bf16_missing, mxnet_bf16_refusal
from tests.helpers import files_under

SPEC = """\
name: bf16
dataset:
  name: cifar10
  synthetic: {train_size: 64, test_size: 32}
model: {name: simple_cnn}
frameworks: [pytorch, mxnet]
recipe: {epochs: 1, batch_size: 8, optimizer: sgd, lr: 0.01, precision: PRECISION}
"""
AVX2_ONLY = {"fpu", "sse4_2", "avx", "avx2", "fma"}
AVX512 = AVX2_ONLY | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
EPYC = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx avx2 fma\n\n"


def _spec(tmp_path: Path, precision: str = "amp_bf16") -> Path:
    path = tmp_path / "bf16.yaml"
    path.write_text(SPEC.replace("PRECISION", precision))
    return path


def test_the_flags_oneDNN_needs_for_bf16():  # noqa: N802 - the library's name
    assert cpu_flags(EPYC) == AVX2_ONLY
    assert cpu_flags("Features\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}  # arm's key
    assert cpu_flags("") == set()
    assert mxnet_bf16_missing(AVX2_ONLY) == ["avx512f", "avx512bw", "avx512vl", "avx512dq"]
    assert mxnet_bf16_missing(AVX512) == [] and mxnet_bf16_refusal(AVX512) is None
    assert "lacks avx512f, avx512bw, avx512vl, avx512dq" in mxnet_bf16_refusal(AVX2_ONLY)


def test_mxnet_bf16_on_a_cpu_without_avx512_is_refused_naming_the_field(tmp_path):
    spec = _spec(tmp_path)
    with pytest.raises(SpecError) as err:
        check_cpu_here(plan_file(spec), spec, flags=AVX2_ONLY)
    line = err.value.describe()
    assert "\n" not in line and "recipe.precision" in line and "1 mxnet run(s) ask for amp_bf16" in line
    assert "needs AVX-512" in line and "fix:" in line
    check_cpu_here(plan_file(spec), spec, flags=AVX512)  # with AVX-512: fine
    fp32 = _spec(tmp_path, "fp32")
    check_cpu_here(plan_file(fp32), fp32, flags=AVX2_ONLY)  # no bf16 run: nothing to refuse


def test_runner_reproduce_refuses_before_anything_runs(tmp_path, cli, monkeypatch):
    spec = _spec(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cpu_check, "cpu_flags", lambda: AVX2_ONLY)  # this machine's CPU, whatever it is
    before = files_under(tmp_path)
    out = cli("reproduce", spec, "--engine", "local", "--results", tmp_path / "results",
              "--cache", tmp_path / "cache", "--data-root", tmp_path / "data")
    assert out.code == 2 and len(out.err.strip().splitlines()) == 1, out.err
    assert "recipe.precision" in out.err and "AVX-512" in out.err
    assert files_under(tmp_path) == before
