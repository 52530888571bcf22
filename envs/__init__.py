"""Environments for loopwm (installed as ``loopwm.envs``).

- :class:`DreamEnv` / :class:`DreamVectorEnv`: a learned world model as a gymnasium
  environment, registered as ``loopwm/Dream-v0`` (``gymnasium.make`` and ``make_vec``).
- ``loopwm/BouncingBall-v0``: loopwm's contact task (:mod:`loopwm.envs.bouncing_ball`),
  where ``info["contact"]`` marks the hard transitions.
- ``pixels/<id>`` (any rendering env, e.g. ``pixels/InvertedPendulum-v5``) through
  :func:`make_env`: the env observed through its last three 64x64 frames
  (:class:`PixelObservation`, :func:`make_pixel_env`).
- ``MinAtar/<Game>-v1`` (the ``loopwm[minatar]`` extra) through :func:`make_env`: MinAtar's
  10x10 grids of binary planes as ``uint8`` images (:class:`BinaryPlanes`), with Discrete
  actions.
- :class:`ActionRepeat` (``make_env(id, action_repeat=N)``): each action applied for N
  env steps, so one transition spans them; :func:`default_action_repeat` is the N that
  ``collect`` and ``train`` use when given none (2 on DeepMind Control ids, else 1).
- :func:`check_spaces` / :func:`check_box_env`: the boundary check applied to every
  real environment and agent; :class:`ObsCodec` and :class:`ActionCodec` map flat or
  image observations and Box or Discrete actions to the vectors a world model sees
  (flattened pixels, one-hot actions).
"""

import gymnasium as gym

from loopwm.envs.dream import DreamEnv, DreamVectorEnv, make_dream_env
from loopwm.envs.minatar import BinaryPlanes
from loopwm.envs.pixels import PixelObservation, make_pixel_env
from loopwm.envs.repeat import ActionRepeat, default_action_repeat
from loopwm.envs.spaces import (
    ActionCodec,
    ObsCodec,
    box_space_meta,
    check_box_env,
    check_spaces,
    dataset_meta,
    make_env,
    space_meta,
)

if "loopwm/Dream-v0" not in gym.registry:
    gym.register(
        "loopwm/Dream-v0",
        entry_point="loopwm.envs.dream:make_dream_env",
        vector_entry_point="loopwm.envs.dream:make_dream_vector_env",
    )
if "loopwm/BouncingBall-v0" not in gym.registry:
    gym.register(
        "loopwm/BouncingBall-v0",
        entry_point="loopwm.envs.bouncing_ball:BouncingBallEnv",
        max_episode_steps=500,
    )

__all__ = [
    "ActionCodec",
    "ActionRepeat",
    "BinaryPlanes",
    "DreamEnv",
    "ObsCodec",
    "PixelObservation",
    "DreamVectorEnv",
    "box_space_meta",
    "check_box_env",
    "check_spaces",
    "dataset_meta",
    "default_action_repeat",
    "make_dream_env",
    "make_env",
    "make_pixel_env",
    "space_meta",
]
