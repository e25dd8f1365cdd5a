"""Shared fixtures. Importing segnet_lib first keeps TF's C++ start-up quiet."""
import numpy as np
import pytest

import segnet_lib


def pytest_configure(config):
    # Graph mode for every test, as in the notebooks.
    segnet_lib.setup(seed=0, verbose=False)


@pytest.fixture
def rng():
    """A seeded NumPy generator, fresh for each test."""
    return np.random.default_rng(0)
