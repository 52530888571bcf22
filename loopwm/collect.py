"""Collect real transitions from a gymnasium environment into an on-disk replay."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from loopwm.checks import check_positive_int, progress_disabled
from loopwm.envs import (
    ActionCodec,
    ObsCodec,
    check_box_env,
    dataset_meta,
    default_action_repeat,
    make_env,
)
from loopwm.io import check_output_dir
from loopwm.replay import ReplayWriter


def collect(
    env_id: str,
    steps: int,
    out: str | os.PathLike,
    *,
    policy: Callable[[np.ndarray], np.ndarray] | None = None,
    policy_name: str = "random",
    seed: int = 0,
    chunk_size: int = 10_000,
    progress: bool | None = None,
    env_kwargs: dict | None = None,
    action_repeat: int | None = None,
) -> dict:
    """Run ``policy`` (uniform random actions by default) for ``steps`` env steps.

    Args:
        env_id: a gymnasium id with flat Box or image observations and Box or Discrete actions.
        steps: number of transitions to store.
        out: dataset folder (must not already hold a dataset).
        policy: ``obs -> action``; Box actions are clipped to the action space, Discrete
            ones stored one-hot.
        policy_name: recorded in the dataset's meta.json.
        seed: seeds the env's first reset and the random policy.
        chunk_size: transitions per chunk file (the memory bound of the writer).
        progress: show a progress bar (``None``: only on a terminal).
        env_kwargs: keyword arguments of ``gymnasium.make``.
        action_repeat: env steps per stored transition (each action applied that many
            times, rewards summed; recorded in meta.json), see :class:`ActionRepeat`;
            ``None``: :func:`~loopwm.envs.default_action_repeat` (2 on DeepMind Control
            ids, else 1).

    Returns:
        The dataset's meta.json content.
    """
    check_positive_int("steps", steps)
    check_output_dir(out, "--out")
    if action_repeat is None:
        action_repeat = default_action_repeat(env_id)
    env = make_env(env_id, action_repeat=action_repeat, **(env_kwargs or {}))
    try:
        obs_dim, action_dim = check_box_env(env)
        env.action_space.seed(seed)
        meta = dataset_meta(env_id, env, policy=policy_name, seed=seed)
        actions = ActionCodec(env.action_space)
        writer = ReplayWriter(
            Path(out),
            obs_dim=obs_dim,
            action_dim=action_dim,
            meta=meta,
            chunk_size=chunk_size,
            obs_dtype=ObsCodec(env.observation_space).storage_dtype,
        )
        obs, _ = env.reset(seed=seed)
        bar = tqdm(
            total=steps, desc=f"collect {env_id}", disable=progress_disabled(progress), unit="step"
        )
        with writer, bar:
            for _ in range(steps):
                action = env.action_space.sample() if policy is None else policy(obs)
                vector = actions.check(action, 1)[0]  # Box: clipped; Discrete: one-hot
                action = actions.to_env(vector)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                writer.add(obs, vector, reward, next_obs, terminated, truncated)
                obs = env.reset()[0] if (terminated or truncated) else next_obs
                bar.update()
        return writer.meta
    finally:
        env.close()
