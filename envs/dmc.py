"""The DeepMind Control suite as loopwm envs, through shimmy.

``make_env("dm_control/cartpole-swingup-v0")`` (any ``dm_control/<domain>-<task>-v0`` id
shimmy registers; the ``loopwm[dmc]`` extra) registers shimmy's ids on first use and
observes the suite's dict of proprioceptive observations as one flat float vector
(gymnasium's ``FlattenObservation``). Every loopwm command then takes it like any
MuJoCo env. The suite's episodes last 1,000 steps and end truncated, never terminated;
rewards lie in [0, 1] per step, so an episode returns at most 1,000.

dm_control 1.0.50 does not run on mujoco 4 (it reads model fields mujoco 4 removed), so
the extra installs mujoco 3.17; gymnasium's MuJoCo envs run on either.
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium import spaces
from gymnasium.wrappers import FlattenObservation

from loopwm.errors import ConfigError

DMC_NAMESPACE = "dm_control"
INSTALL_HINT = "pip install 'loopwm[dmc]'"


def is_dmc_id(env_id: str) -> bool:
    """Whether ``env_id`` names a DeepMind Control task (``dm_control/<domain>-<task>-v0``)."""
    return env_id.startswith(DMC_NAMESPACE + "/")


def register_dmc_envs() -> None:
    """Register shimmy's ``dm_control/...`` ids with gymnasium (once); a clear error naming
    the extra when shimmy or dm_control is missing."""
    if any(name.startswith(DMC_NAMESPACE + "/") for name in gym.registry):
        return
    try:
        import dm_control  # noqa: F401  (shimmy imports it only when an env is made)
        import shimmy
    except ImportError as err:
        raise ConfigError(
            f"DeepMind Control ids need shimmy and dm_control ({err.name} is missing): "
            f"{INSTALL_HINT}"
        ) from None
    gym.register_envs(shimmy)


RENDER_ARGS = ("width", "height", "camera_id")


def make_dmc_env(env_id: str, **kwargs) -> gym.Env:
    """``gymnasium.make`` of a ``dm_control/...`` id, its dict observations flattened.

    ``width``, ``height`` and ``camera_id`` are taken as gymnasium's MuJoCo envs take them
    (shimmy wants them in ``render_kwargs``); frames come from camera 0, the task's own
    view that the suite's pixel benchmarks use, unless ``camera_id`` says otherwise.
    """
    register_dmc_envs()
    render = {name: kwargs.pop(name) for name in RENDER_ARGS if name in kwargs}
    if kwargs.get("render_mode") is not None:
        kwargs["render_kwargs"] = {"camera_id": 0, **render, **kwargs.get("render_kwargs", {})}
    try:
        env = gym.make(env_id, **kwargs)
    except AttributeError as err:  # dm_control reading a field its mujoco does not have
        import mujoco

        raise ConfigError(
            f"cannot make {env_id!r}: dm_control does not run on the installed mujoco "
            f"{mujoco.__version__} ({err}); {INSTALL_HINT} installs a mujoco it runs on"
        ) from None
    if isinstance(env.observation_space, spaces.Dict):
        env = FlattenObservation(env)
    return env
