"""Shared test settings: small thread count, deterministic algorithms, fixed seeds."""

import random

import numpy as np
import pytest
import torch


def pytest_configure(config):
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True, warn_only=True)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _no_heap_settings(monkeypatch):
    """Tests that run ``actionlib train`` etc. in-process must not change this process's malloc
    settings or environment for the tests after them (``actionlib._heap``; test_heap.py opts in)."""
    monkeypatch.setenv("ACTIONLIB_KEEP_HEAP", "0")
