"""Small fake environments for agent tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ReachOriginEnv(gym.Env):
    """Move a point on a line to the origin: ``x' = clip(x + 0.25 a)``, reward ``-|x'|``.

    Episodes start at ``x ~ U(-1, 1)`` and are truncated after ``length`` steps. A uniform
    random policy averages about -0.55 per step; a good one gets close to 0 within 4 steps.
    Actions live in ``[low, high]`` (asymmetric by default, to test action scaling): the
    move is ``0.25 * a'`` with ``a'`` the action mapped to ``[-1, 1]``.
    """

    def __init__(self, length: int = 20, low: float = -2.0, high: float = 4.0) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Box(low, high, (1,), np.float32)
        self.length = length
        self._x = 0.0
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._x = float(self.np_random.uniform(-1, 1))
        self._t = 0
        return np.array([self._x], np.float32), {}

    def step(self, action):
        low, high = self.action_space.low[0], self.action_space.high[0]
        unit = 2.0 * (float(np.clip(action[0], low, high)) - low) / (high - low) - 1.0
        self._x = float(np.clip(self._x + 0.25 * unit, -1.0, 1.0))
        self._t += 1
        obs = np.array([self._x], np.float32)
        return obs, -abs(self._x), False, self._t >= self.length, {}


class DiscreteReachEnv(ReachOriginEnv):
    """:class:`ReachOriginEnv` with three actions ``start + {0, 1, 2}``: move by -0.25, 0
    or +0.25."""

    def __init__(self, length: int = 20, start: int = 0) -> None:
        super().__init__(length)
        self.action_space = spaces.Discrete(3, start=start)

    def step(self, action):
        if not self.action_space.contains(np.int64(action)):
            raise ValueError(f"invalid action {action!r}")
        move = int(action) - int(self.action_space.start) - 1  # -1, 0 or 1
        self._x = float(np.clip(self._x + 0.25 * move, -1.0, 1.0))
        self._t += 1
        obs = np.array([self._x], np.float32)
        return obs, -abs(self._x), False, self._t >= self.length, {}


class FloatImageEnv(ReachOriginEnv):
    """Images that are not uint8 pixels: refused."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Box(0.0, 1.0, (16, 16, 3), np.float32)


class GreyImageEnv(ReachOriginEnv):
    """(H, W) images without a channel axis: refused."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Box(0, 255, (16, 16), np.uint8)


class RandomAgent:
    """Acts uniformly at random in ``env``'s action space (a baseline for learning tests)."""

    def __init__(self, env: gym.Env) -> None:
        self.env = env

    def reset(self, envs=None) -> None:
        pass

    def act(self, obs, explore: bool):
        return self.env.action_space.sample()


class PixelReachEnv(ReachOriginEnv):
    """:class:`ReachOriginEnv` seen as 16x16 RGB images: the point is a bright column
    whose position is ``x`` (a fake pixel env that needs no renderer)."""

    def __init__(self, length: int = 20) -> None:
        super().__init__(length)
        self.observation_space = spaces.Box(0, 255, (16, 16, 3), np.uint8)

    def _image(self) -> np.ndarray:
        image = np.full((16, 16, 3), 20, np.uint8)
        column = int(round((self._x + 1.0) / 2.0 * 15))
        image[:, column, 0] = 255
        image[:, column, 1] = 128
        return image

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._image(), {}

    def step(self, action):
        _, reward, terminated, truncated, info = super().step(action)
        return self._image(), reward, terminated, truncated, info


if "loopwm-test/PixelReach-v0" not in gym.registry:
    gym.register("loopwm-test/PixelReach-v0", entry_point=PixelReachEnv, max_episode_steps=20)
if "loopwm-test/DiscreteReach-v0" not in gym.registry:
    gym.register("loopwm-test/DiscreteReach-v0", entry_point=DiscreteReachEnv)
if "loopwm-test/Reach-v0" not in gym.registry:  # its constructor's arguments as env_kwargs
    gym.register("loopwm-test/Reach-v0", entry_point=ReachOriginEnv, max_episode_steps=50)
