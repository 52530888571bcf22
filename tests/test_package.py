"""Package layout, public names and the docstring examples."""

import doctest
import importlib

import pytest


def test_mapped_packages_import_by_their_loopwm_names():
    import gymnasium as gym

    import loopwm.agents
    import loopwm.envs

    # The folders envs/ and agents/ are loopwm.envs and loopwm.agents: their classes carry
    # those module names, and the registered gymnasium entry points resolve through them.
    assert loopwm.envs.DreamEnv.__module__ == "loopwm.envs.dream"
    assert loopwm.agents.DreamerAgent.__module__ == "loopwm.agents.dreamer"
    assert gym.spec("loopwm/Dream-v0").entry_point == "loopwm.envs.dream:make_dream_env"
    assert gym.make("loopwm/BouncingBall-v0").unwrapped.__module__ == ("loopwm.envs.bouncing_ball")


@pytest.mark.parametrize("module", ["loopwm", "loopwm.config", "loopwm.looped"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
