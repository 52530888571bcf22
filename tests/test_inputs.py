"""Bad input gets a clear ValueError/TypeError at the boundary."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from loopwm.envs import check_box_env, make_env


@pytest.mark.parametrize(
    "obs, err, match",
    [
        (torch.zeros(3, 4), ValueError, r"shape \(batch, 5\)"),
        (torch.zeros(5), ValueError, r"obs\[None\]"),
        (torch.zeros(2, 3, 5), ValueError, "shape"),
        (torch.zeros(3, 5, dtype=torch.long), TypeError, "floating"),
        (np.zeros((3, 5), dtype=np.int32), TypeError, "floating"),
        ([[0.0] * 5], TypeError, "torch.Tensor or numpy"),
        (torch.full((3, 5), float("nan")), ValueError, "NaN or inf"),
        (torch.full((3, 5), float("inf")), ValueError, "NaN or inf"),
    ],
)
def test_encode_rejects_bad_observations(tiny_model, obs, err, match):
    with pytest.raises(err, match=match):
        tiny_model.encode(obs)


def test_step_rejects_bad_actions_and_mismatched_batches(tiny_model):
    h = tiny_model.encode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="action must have shape"):
        tiny_model.step(h, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        tiny_model.step(h, torch.tensor([[0.0, float("nan")]] * 3))
    with pytest.raises(ValueError, match="batch sizes differ"):
        tiny_model.step(h, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="max_iters"):
        tiny_model.step(h, torch.zeros(3, 2), max_iters=0)
    with pytest.raises(ValueError, match="tol"):
        tiny_model.step(h, torch.zeros(3, 2), tol=-1.0)
    with pytest.raises(ValueError, match="actions must have shape"):
        tiny_model.imagine(h, torch.zeros(3, 2))


def test_numpy_float64_input_is_accepted(tiny_model):
    h = tiny_model.encode(np.zeros((2, 5)))
    assert h.dtype == torch.float32


class DictObsEnv(gym.Env):
    observation_space = spaces.Dict({"x": spaces.Box(-1, 1, (2,))})
    action_space = spaces.Box(-1, 1, (1,))


class ImageObsEnv(gym.Env):
    observation_space = spaces.Box(0, 255, (8, 8, 3), dtype=np.uint8)
    action_space = spaces.Box(-1, 1, (1,))


def test_unsupported_spaces_are_rejected():
    with pytest.raises(TypeError, match="Box action"):
        make_env("CartPole-v1")  # Discrete actions
    with pytest.raises(TypeError, match="Box observation"):
        check_box_env(DictObsEnv())
    with pytest.raises(TypeError, match="flat Box observation"):
        check_box_env(ImageObsEnv())
    with pytest.raises(ValueError, match="cannot make environment"):
        make_env("NoSuchEnv-v9")
