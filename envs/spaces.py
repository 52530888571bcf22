"""Space checks and construction of the real environments loopwm learns from."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from loopwm.errors import ConfigError, UnsupportedError


def check_spaces(
    observation_space: spaces.Space, action_space: spaces.Space, who: str = "loopwm"
) -> tuple[int, int]:
    """Check for flat Box observations and bounded flat Box actions.

    Args:
        who: what needs them, for the message (an env id, ``DreamerAgent``, ...).

    Returns:
        ``(obs_dim, action_dim)`` read from the spaces.

    Raises:
        UnsupportedError: (a ``TypeError``) for any other space (Discrete, Dict, images...),
            naming it.
    """
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        kind = "image " if isinstance(observation_space, spaces.Box) else ""
        raise UnsupportedError(
            f"{who}: loopwm supports flat Box observation spaces (shape (n,)), got "
            f"{kind}observations {observation_space}. Image observations are not supported "
            f"yet: flatten them or use state observations"
        )
    if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
        raise UnsupportedError(
            f"{who}: loopwm supports flat Box action spaces (shape (n,)), got {action_space}. "
            f"Discrete actions are not supported yet"
        )
    if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
        raise UnsupportedError(f"{who}: the action space must be bounded, got {action_space}")
    return int(observation_space.shape[0]), int(action_space.shape[0])


def check_box_env(env: gym.Env) -> tuple[int, int]:
    """:func:`check_spaces` of an env's spaces, naming the env: ``(obs_dim, action_dim)``."""
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    return check_spaces(env.observation_space, env.action_space, name)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id)`` with a clear error for unknown ids and unsupported spaces."""
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as err:
        raise ConfigError(f"cannot make environment {env_id!r}: {err}") from None
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


def dataset_meta(env_id: str, env: gym.Env, *, policy: str, seed: int) -> dict[str, Any]:
    """What a dataset records of where its transitions came from (its meta.json facts)."""
    return {
        "env_id": env_id,
        "policy": policy,
        "seed": seed,
        "observation_space": box_space_meta(env.observation_space),
        "action_space": box_space_meta(env.action_space),
    }
