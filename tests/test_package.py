"""Package layout, public names and the docstring examples."""

import doctest
import importlib

import pytest


def test_mapped_packages_import_by_their_loopwm_names():
    import loopwm.agents
    import loopwm.envs

    assert loopwm.envs.__name__ == "loopwm.envs"
    assert loopwm.agents.__name__ == "loopwm.agents"


@pytest.mark.parametrize("module", ["loopwm", "loopwm.config", "loopwm.looped"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
