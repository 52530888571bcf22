"""Pixel versions of any rendering env: observations are its last rendered frames.

``make_env("pixels/InvertedPendulum-v5")`` (and every loopwm command given that id) makes
``InvertedPendulum-v5`` with ``render_mode="rgb_array"`` and observes it through
:class:`PixelObservation`: the last ``frame_stack`` RGB frames, ``size`` x ``size``,
stacked on the channel axis, ``uint8``. A single frame does not show velocities; three
stacked frames do (the convention TD-MPC2 and DrQ use for pixels). MuJoCo envs render
headless (``MUJOCO_GL=egl``) at the requested size with shadows and reflections off.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from loopwm.checks import check_positive_int
from loopwm.errors import ConfigError

PIXEL_NAMESPACE = "pixels"
DEFAULT_SIZE = 64
DEFAULT_FRAME_STACK = 3
# one colour per binary plane (matplotlib's tab10), repeated for images with more planes
PLANE_COLOURS = np.array(
    [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ],
    dtype=np.uint8,
)


class PixelObservation(gym.Wrapper):
    """Observe ``env`` (made with ``render_mode="rgb_array"``) through its rendered frames.

    Observations are ``Box(0, 255, (size, size, 3 * frame_stack), uint8)``: the newest
    frame last; after a reset the first frame fills the stack. ``info["state"]`` keeps the
    env's own observation. ``render()`` returns the newest frame.

    Args:
        size: height and width of a frame; a frame rendered at another size is resampled
            (nearest pixel).
        frame_stack: frames per observation.
    """

    def __init__(
        self, env: gym.Env, size: int = DEFAULT_SIZE, frame_stack: int = DEFAULT_FRAME_STACK
    ):
        super().__init__(env)
        check_positive_int("size", size)
        check_positive_int("frame_stack", frame_stack)
        if env.render_mode != "rgb_array":
            raise ConfigError(
                f"PixelObservation needs an env made with render_mode='rgb_array', got "
                f"{env.render_mode!r}"
            )
        self.size, self.frame_stack = size, frame_stack
        self.observation_space = spaces.Box(0, 255, (size, size, 3 * frame_stack), np.uint8)
        self._frames: deque[np.ndarray] = deque(maxlen=frame_stack)
        self._shadows_off = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        state, info = self.env.reset(seed=seed, options=options)
        frame = self._frame()
        self._frames.extend([frame] * self.frame_stack)
        return self._observation(), {**info, "state": state}

    def step(self, action):
        state, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(self._frame())
        return self._observation(), reward, terminated, truncated, {**info, "state": state}

    def render(self) -> np.ndarray:
        """The newest frame (size, size, 3); gymnasium's ``ResetNeeded`` before a reset."""
        if not self._frames:
            raise gym.error.ResetNeeded("PixelObservation.render() needs a reset() first")
        return self._frames[-1].copy()

    def _observation(self) -> np.ndarray:
        return np.concatenate(self._frames, axis=-1)

    def _frame(self) -> np.ndarray:
        if not self._shadows_off:
            disable_shadows(self.env.unwrapped)
            self._shadows_off = True
        frame = np.asarray(self.env.render())
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ConfigError(f"render() must return (H, W, 3) RGB frames, got {frame.shape}")
        return resample(frame, self.size).astype(np.uint8, copy=False)


def disable_shadows(unwrapped: Any) -> None:
    """Turn off shadows and reflections of a MuJoCo env's offscreen renderer (software
    rendering spends most of its time on them); other envs are left as they are."""
    physics = getattr(unwrapped, "physics", None)  # DeepMind Control (through shimmy)
    if physics is not None:  # its renderer builds a scene per frame: off in the model
        physics.model.light_castshadow[:] = 0
        physics.model.mat_reflectance[:] = 0
        return
    renderer = getattr(unwrapped, "mujoco_renderer", None)
    if renderer is None:
        return
    import mujoco

    viewer = renderer._get_viewer(render_mode="rgb_array")
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False


def make_pixel_env(
    env_id: str,
    size: int = DEFAULT_SIZE,
    frame_stack: int = DEFAULT_FRAME_STACK,
    render_mode: str | None = None,
    **kwargs: Any,
) -> PixelObservation:
    """``env_id`` observed through :class:`PixelObservation`. MuJoCo envs render at
    ``size`` directly (DeepMind Control tasks from camera 0, as the suite's pixel
    benchmarks do); others (classic control) are resampled. ``render_mode`` is accepted
    for gymnasium's sake: the wrapper always renders ``rgb_array`` frames."""
    from loopwm.envs.dmc import is_dmc_id, make_dmc_env

    if render_mode not in (None, "rgb_array"):
        raise ConfigError(f"pixel envs render rgb_array frames, got render_mode={render_mode!r}")
    if is_dmc_id(env_id):
        env = make_dmc_env(env_id, render_mode="rgb_array", width=size, height=size, **kwargs)
        return PixelObservation(env, size=size, frame_stack=frame_stack)
    try:
        env = gym.make(env_id, render_mode="rgb_array", width=size, height=size, **kwargs)
    except TypeError:  # an env without width/height arguments (classic control)
        env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    return PixelObservation(env, size=size, frame_stack=frame_stack)


def register_pixel_env(env_id: str) -> str:
    """Register ``pixels/<base>`` for the pixel id ``env_id`` (idempotent); returns it.
    The time limit and reward threshold are the base env's. A base that is a pixel id
    itself (``pixels/pixels/...``) is refused: its frames would be rendered twice."""
    base = pixel_base(env_id)
    if is_pixel_id(base):
        raise ConfigError(
            f"{env_id!r} nests a pixel id: {base!r} is a pixel env already; use it directly"
        )
    if env_id not in gym.registry:
        spec = gym.spec(base)  # an unknown base id raises gymnasium's error here
        gym.register(
            env_id,
            entry_point="loopwm.envs.pixels:make_pixel_env",
            kwargs={"env_id": base},
            max_episode_steps=spec.max_episode_steps,
            reward_threshold=spec.reward_threshold,
        )
    return env_id


def is_pixel_id(env_id: str) -> bool:
    """Whether ``env_id`` names a pixel env (``pixels/<base id>``)."""
    return env_id.startswith(PIXEL_NAMESPACE + "/")


def pixel_base(env_id: str) -> str | None:
    """The base id a pixel id observes (``pixels/<base>``); ``None`` for other ids."""
    return env_id.split("/", 1)[1] if is_pixel_id(env_id) else None


def resample(frame: np.ndarray, size: int) -> np.ndarray:
    """``frame`` (H, W, C) at ``size`` x ``size``, nearest pixel (as it is if it already is)."""
    if frame.shape[:2] == (size, size):
        return np.ascontiguousarray(frame)
    rows = np.arange(size) * frame.shape[0] // size
    cols = np.arange(size) * frame.shape[1] // size
    return np.ascontiguousarray(frame[rows][:, cols])


def image_frame(image: np.ndarray, planes: bool = False) -> np.ndarray:
    """An RGB frame (H, W, 3) ``uint8`` that shows an image observation (H, W, C).

    Stacked RGB frames (``planes`` false) show the newest frame: the last three channels,
    or the last channel in grey when C is not a multiple of 3. Binary planes (values 0 and
    1, one plane per kind of object, as :class:`loopwm.envs.minatar.BinaryPlanes` gives)
    show each cell in the colour of its highest set plane, black where none is set.
    """
    if planes:
        index = np.where(image > 0, np.arange(1, image.shape[-1] + 1), 0).max(-1)
        frame = PLANE_COLOURS[(index - 1) % len(PLANE_COLOURS)]
        frame[index == 0] = 0
        return frame
    if image.shape[-1] % 3 == 0:
        return np.ascontiguousarray(image[..., -3:])
    return np.repeat(image[..., -1:], 3, axis=-1)
