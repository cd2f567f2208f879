"""Each package's public surface is explicit and sorted."""

import importlib

import pytest

PACKAGES = ["socialcredit", "socialcredit.policy", "socialcredit.events", "socialcredit.engine", "socialcredit.offers"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_importable(name):
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)
    for attr in module.__all__:
        assert hasattr(module, attr), attr
