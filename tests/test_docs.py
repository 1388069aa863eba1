"""The examples in the docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = [
    "rnnbptt.unroll",
    "rnnbptt.gradcheck",
    "rnnbptt.cells",
    "rnnbptt.bptt",
    "rnnbptt.checkpoint",
    "rnnbptt.models",
    "rnnbptt.data.windows",
    "rnnbptt.runs",
    "rnnbptt.compilation",
    "rnnbptt.forecast.quantiles",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), raise_on_error=False)
    assert result.failed == 0
    if name not in ("rnnbptt.cells", "rnnbptt.bptt"):
        assert result.attempted > 0
