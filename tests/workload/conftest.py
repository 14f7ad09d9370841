"""Shared fixtures for the model, optimizer and schedule tests.

Frameworks are imported inside fixtures (and skipped when missing), never at module level, so
the pure-Python tests run without them. Both fixtures pin the frameworks to one thread: the
machines running the suite are small and shared.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def torch_mod():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="session")
def tf_mod():
    tf = pytest.importorskip("tensorflow")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialized by an earlier test in this process
    return tf
