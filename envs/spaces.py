"""Space checks and construction of the real environments loopwm learns from."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from loopwm.checks import check_positive_int
from loopwm.envs.repeat import ActionRepeat
from loopwm.errors import ConfigError, UnsupportedError


def check_spaces(
    observation_space: spaces.Space, action_space: spaces.Space, who: str = "loopwm"
) -> tuple[int, int]:
    """Check for flat Box or image observations and bounded flat Box or Discrete actions.

    Args:
        who: what needs them, for the message (an env id, ``DreamerAgent``, ...).

    Returns:
        ``(obs_dim, action_dim)`` read from the spaces: an image's ``obs_dim`` is its
        number of values H*W*C (see :func:`check_observation_space`), a ``Discrete(n)``
        action space's ``action_dim`` is n (the model sees one-hot actions, see
        :class:`ActionCodec`).

    Raises:
        UnsupportedError: (a ``TypeError``) for any other space (Dict, Text...), naming it
            and the wrapper that would make it usable.
    """
    obs_dim, _ = check_observation_space(observation_space, who)
    return obs_dim, check_action_space(action_space, who)


def check_observation_space(space: spaces.Space, who: str = "loopwm") -> tuple[int, tuple]:
    """``(obs_dim, image_shape)`` of an observation space loopwm can learn from.

    A flat ``Box`` (shape (n,)) has ``image_shape`` ``()``; an image, a ``uint8`` Box of
    shape (H, W, C) with H, W >= 8 (what :func:`loopwm.envs.make_pixel_env`, gymnasium's
    ``AddRenderObservation`` and dm_control's pixel wrappers give), has ``(H, W, C)`` and
    ``obs_dim`` H*W*C: the model sees it flattened and reshapes it for its conv encoder.
    Anything else is an :class:`UnsupportedError` naming the space and what to wrap it with.
    """
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return int(space.shape[0]), ()
    if isinstance(space, spaces.Box) and len(space.shape) == 3:
        height, width, channels = (int(n) for n in space.shape)
        if space.dtype == np.bool_:
            raise UnsupportedError(
                f"{who}: bool grid observations must be uint8 images, got {space}; wrap the "
                f"env with loopwm.envs.BinaryPlanes (make_env does for you)"
            )
        if space.dtype != np.uint8:
            raise UnsupportedError(
                f"{who}: image observations must be uint8 (H, W, C) pixels, got {space}; "
                f"scale them to 0..255 and cast to uint8, or flatten them "
                f"(gymnasium.wrappers.FlattenObservation)"
            )
        if height < 8 or width < 8:
            raise UnsupportedError(
                f"{who}: images must be at least 8x8 (H, W, C), got {space}; for a few "
                f"values use flat observations (gymnasium.wrappers.FlattenObservation)"
            )
        return height * width * channels, (height, width, channels)
    if isinstance(space, spaces.Box):
        hint = (
            "add a channel axis to get (H, W, 1) images"
            if len(space.shape) == 2
            else "reshape them to (H, W, C) images or flatten them"
        )
        raise UnsupportedError(
            f"{who}: loopwm supports flat Box observations (n,) and uint8 images (H, W, C), "
            f"got a Box of shape {space.shape} ({space}); {hint} "
            f"(gymnasium.wrappers.FlattenObservation flattens)"
        )
    try:
        spaces.flatdim(space)  # Discrete, MultiDiscrete, Text, Dict or Tuple of those flatten
    except (ValueError, NotImplementedError, TypeError):  # a Graph or Sequence inside
        raise UnsupportedError(
            f"{who}: loopwm supports flat Box observations (n,) and uint8 images (H, W, C), "
            f"got {space}, which has no fixed-size numeric form; encode it into a Box with a "
            f"gymnasium.ObservationWrapper (FlattenObservation cannot flatten it)"
        ) from None
    raise UnsupportedError(
        f"{who}: loopwm supports flat Box observations (n,) and uint8 images (H, W, C), got "
        f"{space}; wrap the env with gymnasium.wrappers.FlattenObservation to get a flat Box"
    )


class ObsCodec:
    """The one map between an env's observations and the flat float vectors a world
    model sees: a flat Box's values, or an image's H*W*C pixel values (0..255, scaled by
    the model's standardisation, in one place)."""

    def __init__(self, space: spaces.Space, who: str = "ObsCodec") -> None:
        self.dim, self.image_shape = check_observation_space(space, who)
        self.space = space
        self.storage_dtype = "uint8" if self.image_shape else "float32"  # in a replay
        # binary planes (values 0 and 1, e.g. MinAtar's) rather than 0..255 RGB frames
        self.planes = bool(self.image_shape) and float(np.max(space.high)) <= 1

    def to_vectors(self, obs: Any) -> tuple[np.ndarray, bool]:
        """``(vectors, single)``: float32 vectors (N, dim) of one observation (the space's
        shape) or of N stacked ones (N, *shape), checked (shape, real finite values);
        ``single`` says which was given."""
        arr = np.asarray(obs)
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ConfigError(f"observations must be real numbers, got dtype {arr.dtype}")
        shape = self.space.shape
        single = arr.shape == shape
        if not single and (arr.ndim != len(shape) + 1 or arr.shape[1:] != shape or not len(arr)):
            raise ConfigError(
                f"obs must have shape {shape} (one env) or (N, {', '.join(map(str, shape))}) "
                f"(N envs), got {arr.shape}"
            )
        vectors = arr.reshape(-1, self.dim).astype(np.float32)
        if not np.isfinite(vectors).all():
            raise ConfigError("obs contains NaN or inf")
        return vectors, single

    def to_env(self, vectors: np.ndarray) -> np.ndarray:
        """Observations (N, *shape) in the space's dtype of model vectors (N, dim): clipped
        to the space's bounds, rounded first for an integer dtype (images)."""
        arr = np.asarray(vectors, dtype=np.float64).reshape(-1, *self.space.shape)
        arr = np.clip(arr, self.space.low, self.space.high)
        if np.issubdtype(self.space.dtype, np.integer):
            arr = np.rint(arr)
        return arr.astype(self.space.dtype)

    def frame(self, image: np.ndarray) -> np.ndarray:
        """The RGB frame (H, W, 3) that shows one image observation (H, W, C)
        (:func:`loopwm.envs.pixels.image_frame`)."""
        from loopwm.envs.pixels import image_frame

        return image_frame(image, self.planes)


def check_action_space(action_space: spaces.Space, who: str = "loopwm") -> int:
    """The model's ``action_dim`` for a bounded flat Box (its size) or a ``Discrete(n)``
    (n, one-hot); any other action space is an :class:`UnsupportedError` naming it."""
    if isinstance(action_space, spaces.Discrete):
        if action_space.n < 2:
            raise UnsupportedError(f"{who}: Discrete actions need n >= 2, got {action_space}")
        return int(action_space.n)
    if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
        raise UnsupportedError(
            f"{who}: loopwm supports flat Box or Discrete action spaces, got {action_space}"
        )
    if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
        raise UnsupportedError(f"{who}: the action space must be bounded, got {action_space}")
    return int(action_space.shape[0])


class ActionCodec:
    """The one map between an env's actions and the action vectors a world model sees.

    A Box action is its own vector (float32, clipped to the bounds); a ``Discrete(n)``
    action ``a`` is the one-hot vector of ``a - start`` with n entries, and a vector maps
    back to the env action of its largest entry.
    """

    def __init__(self, space: spaces.Space) -> None:
        self.dim = check_action_space(space, "ActionCodec")
        self.space = space
        self.discrete = isinstance(space, spaces.Discrete)

    def check(self, actions: Any, batch: int) -> np.ndarray:
        """Vectors (batch, dim) of ``batch`` env actions, validated: a Box's (batch, A)
        finite reals (clipped), a Discrete's (batch,) integers inside the space."""
        arr = np.asarray(actions)
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ConfigError(f"actions must be real numbers, got dtype {arr.dtype}")
        if self.discrete:
            if arr.size != batch or arr.ndim > 1:
                raise ConfigError(f"actions must have shape ({batch},), got {arr.shape}")
            start, n = int(self.space.start), int(self.space.n)
            flat = arr.reshape(batch)
            whole = np.isfinite(flat).all() and (flat == np.round(flat)).all()
            if not whole or (flat < start).any() or (flat >= start + n).any():
                raise ConfigError(
                    f"actions of {self.space} must be integers in [{start}, {start + n}), "
                    f"got {flat.tolist()}"
                )
            return self.to_vectors(flat.astype(np.int64))
        shape = (batch, *self.space.shape)
        if arr.size != int(np.prod(shape)) or arr.shape not in (shape, self.space.shape):
            raise ConfigError(f"actions must have shape {shape}, got {arr.shape}")
        arr = arr.reshape(shape).astype(np.float32)
        if not np.isfinite(arr).all():
            raise ConfigError("actions contain NaN or inf")
        return self.to_vectors(arr)

    def to_vectors(self, actions: Any) -> np.ndarray:
        """Vectors (..., dim) float32 of env actions (Box: clipped; Discrete: one-hot)."""
        if self.discrete:
            index = np.asarray(actions, dtype=np.int64) - int(self.space.start)
            return np.eye(self.dim, dtype=np.float32)[index]
        arr = np.asarray(actions, dtype=np.float32)
        return np.clip(arr, self.space.low, self.space.high)

    def to_env(self, vectors: np.ndarray) -> np.ndarray:
        """Env actions of vectors (..., dim): a Box's as they are (in the space's dtype), a
        Discrete's index of the largest entry (int64)."""
        if self.discrete:
            return np.argmax(vectors, axis=-1).astype(np.int64) + int(self.space.start)
        return np.asarray(vectors).astype(self.space.dtype)


def check_box_env(env: gym.Env) -> tuple[int, int]:
    """:func:`check_spaces` of an env's spaces, naming the env: ``(obs_dim, action_dim)``."""
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    return check_spaces(env.observation_space, env.action_space, name)


def episode_limit(env: gym.Env) -> int | None:
    """Env steps after which ``env`` truncates an episode (``None``: never): its spec's
    ``max_episode_steps``, or a DeepMind Control task's own step limit (the suite
    truncates inside the env, and shimmy's spec records no limit)."""
    if env.spec is not None and env.spec.max_episode_steps:
        return int(env.spec.max_episode_steps)
    step_limit = getattr(getattr(env.unwrapped, "_env", None), "_step_limit", None)
    return int(step_limit) if step_limit and np.isfinite(step_limit) else None


def make_env(env_id: str, *, action_repeat: int = 1, **kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id)`` with a clear error for unknown ids and unsupported spaces.

    ``pixels/<id>`` (e.g. ``pixels/InvertedPendulum-v5``) is ``<id>`` observed through its
    rendered frames: 64x64 RGB, three stacked (:mod:`loopwm.envs.pixels`). ``MinAtar/<Game>``
    ids (the ``loopwm[minatar]`` extra) and any env with ``bool`` (H, W, C) grid
    observations are observed as ``uint8`` binary planes (:mod:`loopwm.envs.minatar`).
    ``dm_control/<domain>-<task>-v0`` ids (the ``loopwm[dmc]`` extra) are the DeepMind
    Control suite's tasks with flat observations (:mod:`loopwm.envs.dmc`). With
    ``action_repeat`` N > 1 each step applies the action N times (:class:`ActionRepeat`)."""
    from loopwm.envs.dmc import is_dmc_id, make_dmc_env
    from loopwm.envs.minatar import (
        BinaryPlanes,
        is_binary_grid,
        is_minatar_id,
        register_minatar_envs,
    )
    from loopwm.envs.pixels import make_pixel_env, pixel_base, register_pixel_env

    check_positive_int("action_repeat", action_repeat)

    if is_minatar_id(env_id):
        register_minatar_envs()
    try:
        base = pixel_base(env_id)
        if base is not None and is_dmc_id(base):
            # a gymnasium id holds one namespace: DMC pixels are made here, not registered
            env = make_pixel_env(base, **kwargs)
        elif is_dmc_id(env_id):
            env = make_dmc_env(env_id, **kwargs)
        else:
            if base is not None:
                register_pixel_env(env_id)
            env = gym.make(env_id, **kwargs)
    except gym.error.Error as err:
        raise ConfigError(f"cannot make environment {env_id!r}: {err}") from None
    except TypeError as err:  # a keyword argument the env's constructor does not take
        if "keyword argument" not in str(err):
            raise
        raise ConfigError(f"cannot make environment {env_id!r} with {kwargs}: {err}") from None
    if is_binary_grid(env.observation_space):
        env = BinaryPlanes(env)
    try:
        check_box_env(env)
    except TypeError:
        env.close()
        raise
    return ActionRepeat(env, action_repeat) if action_repeat > 1 else env


def box_space_meta(space: spaces.Box) -> dict[str, Any]:
    """JSON description of a Box (stored with datasets); null marks an unbounded side. An
    image's bounds are one number each (its pixels share them)."""
    if len(space.shape) == 3:
        return {
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": float(np.min(space.low)),
            "high": float(np.max(space.high)),
        }

    def bounds(values: np.ndarray) -> list:
        # JSON has no infinity: an unbounded side is stored as null.
        return [float(v) if np.isfinite(v) else None for v in np.asarray(values).reshape(-1)]

    return {"shape": list(space.shape), "low": bounds(space.low), "high": bounds(space.high)}


def space_meta(space: spaces.Space) -> dict[str, Any]:
    """JSON description of a Box (:func:`box_space_meta`) or a Discrete space."""
    if isinstance(space, spaces.Discrete):
        return {"discrete": int(space.n), "start": int(space.start)}
    return box_space_meta(space)


def dataset_meta(env_id: str, env: gym.Env, *, policy: str, seed: int) -> dict[str, Any]:
    """What a dataset records of where its transitions came from (its meta.json facts);
    ``action_repeat`` is the env steps one stored transition spans."""
    return {
        "env_id": env_id,
        "action_repeat": env.repeat if isinstance(env, ActionRepeat) else 1,
        "policy": policy,
        "seed": seed,
        "observation_space": box_space_meta(env.observation_space),
        "action_space": space_meta(env.action_space),
    }
