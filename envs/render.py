"""Render imagined observations with the real environment's MuJoCo model and camera.

An observation maps back to a MuJoCo state ``(qpos, qvel)`` for the tasks below. The
locomotion tasks leave the root x position out of their observations; it is integrated
from the root x velocity (``x += qvel[0] * dt``), starting at 0 on reset.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from loopwm.envs.pixels import disable_shadows
from loopwm.errors import ConfigError


def _pendulum(obs: np.ndarray, nq: int) -> tuple[np.ndarray, np.ndarray]:
    return obs[:nq], obs[nq : 2 * nq]


def _double_pendulum(obs: np.ndarray, nq: int) -> tuple[np.ndarray, np.ndarray]:
    # [x, sin(t1), sin(t2), cos(t1), cos(t2), qvel(3), constraint force]
    angles = np.arctan2(obs[1:3], obs[3:5])
    return np.concatenate([obs[:1], angles]), obs[5:8]


def _reacher(obs: np.ndarray, nq: int) -> tuple[np.ndarray, np.ndarray]:
    # [cos(t), sin(t), target xy, joint velocities, fingertip - target]
    angles = np.arctan2(obs[2:4], obs[0:2])
    return np.concatenate([angles, obs[4:6]]), np.concatenate([obs[6:8], np.zeros(2)])


def _locomotion(obs: np.ndarray, nq: int) -> tuple[np.ndarray, np.ndarray]:
    # [qpos[1:], qvel]: the root x position is not observed (filled in by the renderer)
    return np.concatenate([[0.0], obs[: nq - 1]]), obs[nq - 1 :]


STATE_FROM_OBS = {
    "InvertedPendulum": _pendulum,
    "InvertedDoublePendulum": _double_pendulum,
    "Reacher": _reacher,
    "Hopper": _locomotion,
    "HalfCheetah": _locomotion,
    "Walker2d": _locomotion,
    "BouncingBall": _pendulum,  # loopwm's contact task: [qpos, qvel] like the pendulum
}


def check_renderable(env_id: str) -> None:
    """Raise ``ValueError`` unless imagined observations of ``env_id`` can be rendered."""
    try:
        name = gym.spec(env_id).name
    except gym.error.Error as err:
        raise ConfigError(f"cannot make the real environment {env_id!r}: {err}") from None
    if name not in STATE_FROM_OBS:
        raise ConfigError(
            f"cannot render imagined states of {name}: its observations do not map back "
            f"to a MuJoCo state; supported: {sorted(STATE_FROM_OBS)}"
        )


class StateRenderer:
    """Draws observations of ``env`` (made with ``render_mode="rgb_array"``) as MuJoCo
    frames, with shadows and reflections off for speed."""

    def __init__(self, env: gym.Env) -> None:
        if env.spec is None:
            raise ConfigError("rendering imagined states needs an env made by gymnasium.make")
        check_renderable(env.spec.id)
        name = env.spec.name
        if getattr(env.unwrapped, "_exclude_current_positions_from_observation", True) is False:
            raise ConfigError(f"{name} with x positions in the observation is not supported")
        self.env = env
        self.unwrapped = env.unwrapped
        self.state_from_obs = STATE_FROM_OBS[name]
        self.locomotion = self.state_from_obs is _locomotion
        self.nq = self.unwrapped.model.nq
        self.dt = float(self.unwrapped.dt)
        self.root_x = 0.0
        self._flags_set = False
        env.reset(seed=0)

    def reset(self, obs: np.ndarray) -> None:
        self.root_x = 0.0
        self._set(obs)

    def advance(self, obs: np.ndarray) -> None:
        if self.locomotion:
            self.root_x += float(obs[self.nq - 1]) * self.dt  # root x velocity
        self._set(obs)

    def _set(self, obs: np.ndarray) -> None:
        qpos, qvel = self.state_from_obs(np.asarray(obs, dtype=np.float64), self.nq)
        if self.locomotion:
            qpos = qpos.copy()
            qpos[0] = self.root_x
        self.unwrapped.set_state(qpos, qvel)

    def render(self) -> np.ndarray:
        if not self._flags_set:
            disable_shadows(self.unwrapped)
            self._flags_set = True
        return self.env.render()
