"""Render imagined observations with the real environment's MuJoCo model and camera.

An observation maps back to a MuJoCo state ``(qpos, qvel)`` for the tasks below: gymnasium's
MuJoCo envs and loopwm's contact task by name, DeepMind Control tasks (``dm_control/...``)
by domain. Locomotion tasks leave the root x position out of their observations; it is
integrated from the root x velocity (``x += v * dt`` per imagined step, ``dt`` the span
of one step with its action repeat), starting at 0 on reset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from loopwm.envs.dmc import is_dmc_id, register_dmc_envs
from loopwm.envs.pixels import disable_shadows
from loopwm.errors import ConfigError

# obs, the env's MuJoCo model (``mujoco.MjModel``) -> (qpos, qvel); an unobserved root x is 0
StateFromObs = Callable[[np.ndarray, Any], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class StateMap:
    """How one task's observations map back to its MuJoCo state."""

    state_from_obs: StateFromObs
    root_x: int | None = None
    """Index (in qpos and qvel) of the root x position the observation leaves out, or
    ``None`` when the observation holds the whole position."""
    place: Callable[[Any, np.ndarray], None] | None = None
    """``place(physics, obs)`` sets what the observation shows besides the state (a
    DeepMind Control task's target), after the state is set."""


def _split(obs: np.ndarray, model: Any) -> tuple[np.ndarray, np.ndarray]:
    # [qpos, qvel]
    return obs[: model.nq], obs[model.nq : model.nq + model.nv]


def _double_pendulum(obs: np.ndarray, model: Any) -> tuple[np.ndarray, np.ndarray]:
    # [x, sin(t1), sin(t2), cos(t1), cos(t2), qvel(3), constraint force]
    angles = np.arctan2(obs[1:3], obs[3:5])
    return np.concatenate([obs[:1], angles]), obs[5:8]


def _reacher(obs: np.ndarray, model: Any) -> tuple[np.ndarray, np.ndarray]:
    # [cos(t), sin(t), target xy, joint velocities, fingertip - target]
    angles = np.arctan2(obs[2:4], obs[0:2])
    return np.concatenate([angles, obs[4:6]]), np.concatenate([obs[6:8], np.zeros(2)])


def _without_root_x(obs: np.ndarray, model: Any) -> tuple[np.ndarray, np.ndarray]:
    # [qpos[1:], qvel, ...]: the root x position is not observed (filled in by the renderer)
    return np.concatenate([[0.0], obs[: model.nq - 1]]), obs[model.nq - 1 : model.nq - 1 + model.nv]


# DeepMind Control observations arrive flattened from a dict in sorted key order
# (gymnasium's Dict space sorts its keys), e.g. walker's [height, orientations, velocity].


def _dmc_cartpole(obs: np.ndarray, model: Any) -> tuple[np.ndarray, np.ndarray]:
    # position: [cart x, then (cos, sin) of each pole's world angle]; a hinge's angle is
    # its pole's less the pole below it (the first pole's hinge sits on the cart)
    poles = model.nq - 1
    pairs = obs[1 : 1 + 2 * poles].reshape(poles, 2)
    turns = np.arctan2(pairs[:, 1], pairs[:, 0])
    hinges = np.angle(np.exp(1j * np.diff(turns, prepend=0.0)))
    return np.concatenate([obs[:1], hinges]), obs[1 + 2 * poles : 1 + 2 * poles + model.nv]


def _dmc_hopper(obs: np.ndarray, model: Any) -> tuple[np.ndarray, np.ndarray]:
    # [position = qpos[1:], touch (2), velocity]
    qpos = np.concatenate([[0.0], obs[: model.nq - 1]])
    return qpos, obs[model.nq - 1 + 2 : model.nq + 1 + model.nv]


def _dmc_reacher(obs: np.ndarray, model: Any) -> tuple[np.ndarray, np.ndarray]:
    # [position (2), to_target (2), velocity (2)]; the target is placed below
    return obs[:2], obs[4:6]


def _place_reacher_target(physics: Any, obs: np.ndarray) -> None:
    finger = physics.named.data.geom_xpos["finger", :2]
    physics.named.model.geom_pos["target", :2] = finger + obs[2:4]  # to_target's origin
    physics.forward()


def _dmc_walker(obs: np.ndarray, model: Any) -> tuple[np.ndarray, np.ndarray]:
    # [torso height, orientations: (xx, xz) of each body's rotation, velocity]. In the
    # plane a body turned by t about y has xx = cos t and xz = sin t; a hinge's angle is
    # its body's turn less its parent's, signed by the hinge axis; rootz is the height
    # less the torso's rest height, rootx is not observed.
    bodies = model.nbody - 1
    orient = obs[1 : 1 + 2 * bodies].reshape(bodies, 2)
    turn = np.concatenate([[0.0], np.arctan2(orient[:, 1], orient[:, 0])])  # world first
    qpos = np.zeros(model.nq)
    for joint in range(model.njnt):
        body, address = model.jnt_bodyid[joint], model.jnt_qposadr[joint]
        axis = model.jnt_axis[joint]
        if model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_HINGE:
            relative = turn[body] - turn[model.body_parentid[body]]
            qpos[address] = np.sign(axis[1]) * np.angle(np.exp(1j * relative))
        elif axis[2] != 0:  # the vertical root slide
            qpos[address] = (obs[0] - model.body_pos[body][2]) * np.sign(axis[2])
    return qpos, obs[1 + 2 * bodies : 1 + 2 * bodies + model.nv]


STATE_FROM_OBS: dict[str, StateMap] = {
    "InvertedPendulum": StateMap(_split),
    "InvertedDoublePendulum": StateMap(_double_pendulum),
    "Reacher": StateMap(_reacher),
    "Hopper": StateMap(_without_root_x, root_x=0),
    "HalfCheetah": StateMap(_without_root_x, root_x=0),
    "Walker2d": StateMap(_without_root_x, root_x=0),
    "BouncingBall": StateMap(_split),  # loopwm's contact task: [qpos, qvel] like the pendulum
}
"""gymnasium tasks by ``spec.name``."""

DMC_STATE_FROM_OBS: dict[str, StateMap] = {
    "ball_in_cup": StateMap(_split),
    "cartpole": StateMap(_dmc_cartpole),
    "cheetah": StateMap(_without_root_x, root_x=0),
    "hopper": StateMap(_dmc_hopper, root_x=0),
    "point_mass": StateMap(_split),
    "reacher": StateMap(_dmc_reacher, place=_place_reacher_target),
    "walker": StateMap(_dmc_walker, root_x=1),
}
"""DeepMind Control tasks by domain (``dm_control/<domain>-<task>-v0``)."""


def _dmc_domain(env_id: str) -> str:
    return env_id.split("/", 1)[1].rsplit("-v", 1)[0].split("-")[0]


def state_map(env_id: str) -> StateMap:
    """The :class:`StateMap` of ``env_id``; ``ValueError`` (a ``ConfigError``) when its
    observations do not map back to a MuJoCo state."""
    if is_dmc_id(env_id):
        register_dmc_envs()
    try:
        name = gym.spec(env_id).name
    except gym.error.Error as err:
        raise ConfigError(f"cannot make the real environment {env_id!r}: {err}") from None
    if is_dmc_id(env_id):
        name, table = _dmc_domain(env_id), DMC_STATE_FROM_OBS
    else:
        table = STATE_FROM_OBS
    if name not in table:
        raise ConfigError(
            f"cannot render imagined states of {name}: its observations do not map back "
            f"to a MuJoCo state; supported: {sorted(STATE_FROM_OBS)} and the DeepMind "
            f"Control domains {sorted(DMC_STATE_FROM_OBS)}"
        )
    return table[name]


def check_renderable(env_id: str) -> None:
    """Raise ``ValueError`` unless imagined observations of ``env_id`` can be rendered."""
    state_map(env_id)


def _action_repeat(env: gym.Env) -> int:
    from loopwm.envs.repeat import ActionRepeat

    while isinstance(env, gym.Wrapper):
        if isinstance(env, ActionRepeat):
            return env.repeat
        env = env.env
    return 1


class StateRenderer:
    """Draws observations of ``env`` (made with ``render_mode="rgb_array"``) as MuJoCo
    frames, with shadows and reflections off for speed.

    ``action_repeat``: env steps per observation passed to :meth:`advance` (the root x of
    a locomotion task moves by its velocity times their span); ``None`` reads it from an
    :class:`~loopwm.envs.ActionRepeat` wrapper of ``env`` (1 without one).
    """

    def __init__(self, env: gym.Env, action_repeat: int | None = None) -> None:
        if env.spec is None:
            raise ConfigError("rendering imagined states needs an env made by gymnasium.make")
        self.map = state_map(env.spec.id)
        name = env.spec.name
        if getattr(env.unwrapped, "_exclude_current_positions_from_observation", True) is False:
            raise ConfigError(f"{name} with x positions in the observation is not supported")
        self.env = env
        self.unwrapped = env.unwrapped
        self.physics = getattr(self.unwrapped, "physics", None)  # DeepMind Control's
        self.model = self.physics.model.ptr if self.physics is not None else self.unwrapped.model
        repeat = _action_repeat(env) if action_repeat is None else action_repeat
        self.dt = float(self.unwrapped.dt) * repeat  # DeepMind Control's: its control step
        self.root_x = 0.0
        self._flags_set = False
        env.reset(seed=0)

    def reset(self, obs: np.ndarray) -> None:
        self.root_x = 0.0
        self._set(obs)

    def advance(self, obs: np.ndarray) -> None:
        if self.map.root_x is not None:
            _, qvel = self.map.state_from_obs(np.asarray(obs, dtype=np.float64), self.model)
            self.root_x += float(qvel[self.map.root_x]) * self.dt
        self._set(obs)

    def _set(self, obs: np.ndarray) -> None:
        obs = np.asarray(obs, dtype=np.float64)
        qpos, qvel = self.map.state_from_obs(obs, self.model)
        if self.map.root_x is not None:
            qpos = qpos.copy()
            qpos[self.map.root_x] = self.root_x
        if self.physics is None:
            self.unwrapped.set_state(qpos, qvel)
            return
        physics = self.physics
        with physics.reset_context():  # runs mj_forward on exit
            physics.data.qpos[:] = qpos
            physics.data.qvel[:] = qvel
        if self.map.place is not None:
            self.map.place(physics, obs)

    def render(self) -> np.ndarray:
        if not self._flags_set:
            disable_shadows(self.unwrapped)
            self._flags_set = True
        return self.env.render()
