"""MinAtar games and other binary-grid observations as loopwm image envs.

MinAtar (Young & Tian 2019; PyPI ``minatar``, the ``loopwm[minatar]`` extra) gives
miniature Atari games whose observations are 10x10 grids of ``C`` binary planes, one per
kind of object, as a ``bool`` Box of shape (10, 10, C), with ``Discrete`` actions.
``make_env("MinAtar/Breakout-v1")`` (any ``MinAtar/<Game>-v0|v1`` id; ``v1`` has the
game's minimal action set) registers the games on first use and observes them through
:class:`BinaryPlanes`: the same planes as a ``uint8`` image with values 0 and 1, which
every loopwm command learns from like any other image (conv encoder, ``uint8`` replay).
:func:`loopwm.envs.pixels.image_frame` draws such planes in colour, one colour per
plane, for ``render()`` and videos.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from loopwm.errors import ConfigError

MINATAR_NAMESPACE = "MinAtar"


def is_minatar_id(env_id: str) -> bool:
    """Whether ``env_id`` names a MinAtar game (``MinAtar/<Game>-v0|v1``)."""
    return env_id.startswith(MINATAR_NAMESPACE + "/")


def register_minatar_envs() -> None:
    """Register the MinAtar ids with gymnasium (once); a clear error without the package."""
    if any(name.startswith(MINATAR_NAMESPACE + "/") for name in gym.registry):
        return
    try:
        from minatar.gym import register_envs
    except ImportError:
        raise ConfigError(
            "MinAtar ids need the minatar package: pip install 'loopwm[minatar]'"
        ) from None
    register_envs()


def is_binary_grid(space: spaces.Space) -> bool:
    """Whether ``space`` is a ``bool`` Box of (H, W, C) grids, as MinAtar's are."""
    return isinstance(space, spaces.Box) and len(space.shape) == 3 and space.dtype == np.bool_


class BinaryPlanes(gym.ObservationWrapper):
    """Observe an env with ``bool`` (H, W, C) grid observations as ``uint8`` images with
    values 0 and 1: ``Box(0, 1, (H, W, C), uint8)``, the same bits in loopwm's image
    dtype (a replay stores them as they are; the model standardises them)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        if not is_binary_grid(env.observation_space):
            raise ConfigError(
                f"BinaryPlanes needs bool (H, W, C) grid observations, got {env.observation_space}"
            )
        self.observation_space = spaces.Box(0, 1, env.observation_space.shape, np.uint8)

    def observation(self, observation) -> np.ndarray:
        return np.asarray(observation, dtype=np.uint8)
