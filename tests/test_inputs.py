"""Bad input gets a clear ValueError/TypeError at the boundary."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from loopwm.envs import check_box_env, make_env
from loopwm.envs.spaces import check_observation_space
from loopwm.errors import LoopWMError


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
def test_check_input_rejects_bad_observations(tiny_model, obs, err, match):
    with pytest.raises(err, match=match) as caught:
        tiny_model.check_input(obs, "obs")
    assert isinstance(caught.value, LoopWMError)  # the CLI prints it as one line


def test_check_input_rejects_bad_actions_and_step_rejects_bad_loop_settings(tiny_model):
    h = tiny_model.encode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="action must have shape"):
        tiny_model.check_input(torch.zeros(3, 3), "action")
    with pytest.raises(ValueError, match="NaN"):
        tiny_model.check_input(torch.tensor([[0.0, float("nan")]] * 3), "action")
    with pytest.raises(ValueError, match="check_input checks one of"):
        tiny_model.check_input(torch.zeros(3, 2), "reward")
    with pytest.raises(ValueError, match="max_iters"):
        tiny_model.step(h, torch.zeros(3, 2), max_iters=0)
    with pytest.raises(ValueError, match="tol"):
        tiny_model.step(h, torch.zeros(3, 2), tol=-1.0)
    with pytest.raises(ValueError, match="either actions or a policy"):
        tiny_model.imagine(h)
    with pytest.raises(ValueError, match="needs a horizon"):
        tiny_model.imagine(h, policy=lambda latent: torch.zeros(3, 2))


def test_numpy_float64_input_is_accepted_and_moved_to_the_model(tiny_model):
    obs = tiny_model.check_input(np.zeros((2, 5)), "obs")
    assert obs.dtype == torch.float32
    assert tiny_model.encode(obs).dtype == torch.float32


class DictObsEnv(gym.Env):
    observation_space = spaces.Dict({"x": spaces.Box(-1, 1, (2,))})
    action_space = spaces.Box(-1, 1, (1,))


class TinyImageEnv(gym.Env):
    observation_space = spaces.Box(0, 255, (4, 4, 3), dtype=np.uint8)
    action_space = spaces.Box(-1, 1, (1,))


class MultiDiscreteActionEnv(gym.Env):
    observation_space = spaces.Box(-1, 1, (2,))
    action_space = spaces.MultiDiscrete([2, 3])


def test_unsupported_spaces_are_rejected():
    with pytest.raises(TypeError, match="Tuple.*FlattenObservation"):
        make_env("Blackjack-v1")  # Tuple observations
    with pytest.raises(TypeError, match="Box or Discrete action"):
        check_box_env(MultiDiscreteActionEnv())
    with pytest.raises(TypeError, match="Dict.*FlattenObservation"):
        check_box_env(DictObsEnv())
    with pytest.raises(TypeError, match="at least 8x8"):
        check_box_env(TinyImageEnv())
    for space in (gym.spaces.MultiDiscrete([3, 4]), gym.spaces.Discrete(5)):
        with pytest.raises(TypeError, match=r"(MultiDiscrete|Discrete).*FlattenObservation"):
            check_observation_space(space)  # both flatten into one-hot Boxes
    with pytest.raises(TypeError, match="Text.*FlattenObservation to get a flat Box"):
        check_observation_space(gym.spaces.Text(8))  # flattens to character indices
    for space in (
        gym.spaces.Graph(gym.spaces.Box(0, 1, (2,)), None),
        gym.spaces.Sequence(gym.spaces.Discrete(2)),
        gym.spaces.Dict(steps=gym.spaces.Sequence(gym.spaces.Discrete(2))),
    ):
        with pytest.raises(TypeError, match="no fixed-size.*ObservationWrapper.*cannot flatten"):
            check_observation_space(space)
    with pytest.raises(ValueError, match="cannot make environment"):
        make_env("NoSuchEnv-v9")
