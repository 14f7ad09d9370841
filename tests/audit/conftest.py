"""Fixtures shared by the verify tests: one synthetic bundle per module, a fresh copy per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.audit.cli_helpers import ensure_registered
from tests.audit.synth import make_bundle


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    from tests.audit.test_verify import SMALL

    return make_bundle(tmp_path_factory.mktemp("verify"), spec=SMALL)


@pytest.fixture
def bundle(pristine, tmp_path):
    return Path(shutil.copytree(pristine, tmp_path / pristine.name, symlinks=True))


@pytest.fixture
def cli_reg(cli):
    ensure_registered()
    return cli
