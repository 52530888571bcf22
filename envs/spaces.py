"""Space checks and construction of the real environments loopwm learns from."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def check_box_env(env: gym.Env) -> tuple[int, int]:
    """Check that ``env`` has flat Box observations and Box actions.

    Returns:
        ``(obs_dim, action_dim)`` read from the spaces.

    Raises:
        TypeError: for any other space (Discrete, Dict, images...), naming it.
    """
    obs_space, act_space = env.observation_space, env.action_space
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
        raise TypeError(
            f"{name}: loopwm supports flat Box observation spaces (shape (n,)), got {obs_space}"
        )
    if not isinstance(act_space, spaces.Box) or len(act_space.shape) != 1:
        raise TypeError(
            f"{name}: loopwm supports flat Box action spaces (shape (n,)), got {act_space}"
        )
    if not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
        raise TypeError(f"{name}: the action space must be bounded, got {act_space}")
    return int(obs_space.shape[0]), int(act_space.shape[0])


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id)`` with a clear error for unknown ids and unsupported spaces."""
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as err:
        raise ValueError(f"cannot make environment {env_id!r}: {err}") from None
    try:
        check_box_env(env)
    except TypeError:
        env.close()
        raise
    return env


def box_space_meta(space: spaces.Box) -> dict[str, Any]:
    """JSON description of a Box (stored with datasets); null marks an unbounded side."""

    def bounds(values: np.ndarray) -> list:
        # JSON has no infinity: an unbounded side is stored as null.
        return [float(v) if np.isfinite(v) else None for v in np.asarray(values).reshape(-1)]

    return {"shape": list(space.shape), "low": bounds(space.low), "high": bounds(space.high)}
