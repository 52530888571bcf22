"""stable-baselines3 adapters."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

SB3_ALGOS = ("ppo", "sac", "td3", "a2c", "ddpg")

Policy = Callable[[np.ndarray], np.ndarray]


def load_sb3_policy(
    path: str | os.PathLike, algo: str, env: gym.Env, *, deterministic: bool = False
) -> Policy:
    """Load a saved stable-baselines3 model as a policy ``obs -> action`` for ``env``.

    SB3's zip format contains pickled objects: load only files you trust.

    Raises:
        ValueError: unknown algorithm, or spaces that differ from ``env``'s.
        FileNotFoundError: no file at ``path``.
    """
    import stable_baselines3 as sb3

    algo = algo.lower()
    if algo not in SB3_ALGOS:
        raise ValueError(f"unknown SB3 algorithm {algo!r}; choose from {SB3_ALGOS}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SB3 model at {path}")
    model = getattr(sb3, algo.upper()).load(str(path), device="cpu")
    if model.observation_space.shape != env.observation_space.shape:
        raise ValueError(
            f"{path}: policy observations {model.observation_space.shape} do not match the "
            f"env's {env.observation_space.shape}"
        )
    if model.action_space.shape != env.action_space.shape:
        raise ValueError(
            f"{path}: policy actions {model.action_space.shape} do not match the env's "
            f"{env.action_space.shape}"
        )

    def policy(obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(obs, deterministic=deterministic)
        return np.asarray(action)

    return policy
