"""Action repeat (frame skip): one agent step spans several steps of the env.

DeepMind Control agents act every 2 (TD-MPC2, DreamerV3) to 8 physics steps; a world
model of such an env predicts what happens over the whole span, which is where a looped
model may need its extra depth (``benchmarks/regimes.py``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from loopwm.checks import check_positive_int
from loopwm.envs.dmc import is_dmc_id
from loopwm.envs.pixels import pixel_base

DMC_ACTION_REPEAT = 2
"""Env steps per agent step on DeepMind Control ids unless told otherwise: TD-MPC2's and
DreamerV3's setting, under which their published returns were measured."""


def default_action_repeat(env_id: str) -> int:
    """The action repeat ``loopwm collect`` and ``loopwm train`` use on ``env_id`` when none
    is given: :data:`DMC_ACTION_REPEAT` on ``dm_control/...`` ids (and their pixels,
    ``pixels/dm_control/...``), 1 on every other env."""
    return DMC_ACTION_REPEAT if is_dmc_id(pixel_base(env_id) or env_id) else 1


class ActionRepeat(gym.Wrapper):
    """Apply each action ``repeat`` times; rewards are summed, the episode ends at the
    first sub-step that terminates or truncates.

    ``info`` is the last sub-step's, with ``info["repeats"]`` the sub-steps run and every
    boolean entry OR-ed over them (an event such as ``info["contact"]`` in any sub-step is
    reported). The inner env's time limit counts sub-steps: with ``repeat=4`` a 1000-step
    env gives 250-step episodes, as DeepMind Control's action repeat does.

    >>> import gymnasium as gym
    >>> env = ActionRepeat(gym.make("Pendulum-v1"), 4)
    >>> _ = env.reset(seed=0)
    >>> env.step(env.action_space.sample())[4]["repeats"]
    4
    """

    def __init__(self, env: gym.Env, repeat: int) -> None:
        check_positive_int("action_repeat", repeat)
        super().__init__(env)
        self.repeat = repeat

    def step(self, action: Any):
        total = 0.0
        events: dict[str, bool] = {}
        repeats = 0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            repeats += 1
            total += float(reward)
            for key, value in info.items():
                if isinstance(value, bool | np.bool_):
                    events[key] = events.get(key, False) or bool(value)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, {**info, **events, "repeats": repeats}
