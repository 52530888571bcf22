"""Dyna/MBPO-style SB3 training: real data in, imagined transitions out."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO, SAC

from loopwm.agents.dyna import DynaCallback, DynaConfig
from loopwm.config import FitConfig
from loopwm.models import MODEL_NAMES, model_config, model_family

TINY = DynaConfig(
    preset="tiny",
    warmup_steps=100,
    refit_every=100,
    first_fit_steps=20,
    fit_steps=5,
    rollouts=16,
    horizon=3,
    fit=FitConfig(batch_size=16, horizon=3),
)


def test_dyna_refits_and_feeds_imagined_transitions():
    env = gym.make("InvertedPendulum-v5")
    agent = SAC("MlpPolicy", env, seed=0, learning_starts=50, batch_size=32, device="cpu")
    callback = DynaCallback(TINY, seed=0)
    agent.learn(300, callback=callback)
    assert callback.real_transitions == 300
    assert [h["real_steps"] for h in callback.history] == [100, 200, 300]
    assert callback.trainer.steps == 20 + 5 + 5  # one model, kept training between refits
    assert 0 < callback.imagined <= 3 * 16 * 3
    buffer = agent.replay_buffer
    assert buffer.size() == 300 + callback.imagined
    imagined = buffer.observations[300 : buffer.size()]
    assert np.isfinite(imagined).all()
    assert np.abs(buffer.actions[: buffer.size()]).max() <= 1.0  # stored in SAC's scaled units
    replay = callback.replay()
    # the real store keeps episodes apart, and pendulum episodes end by termination
    assert replay.terminated.sum() == replay.num_episodes - 1
    same = replay.episode[1:] == replay.episode[:-1]
    np.testing.assert_allclose(replay.next_obs[:-1][same], replay.obs[1:][same], atol=1e-6)


def test_dyna_refuses_on_policy_agents():
    agent = PPO("MlpPolicy", gym.make("InvertedPendulum-v5"), n_steps=64, device="cpu")
    with pytest.raises(TypeError, match="off-policy"):
        agent.learn(64, callback=DynaCallback(TINY))


def test_dyna_config_validation():
    with pytest.raises(ValueError, match="rollouts"):
        DynaConfig(rollouts=0)
    with pytest.raises(ValueError, match="needs a decoder"):  # it hands out decoded obs
        DynaConfig(fit=FitConfig(loss_weights={"obs": 0}))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dyna_builds_every_model_family_as_fit_does(name):
    env = gym.make("InvertedPendulum-v5")
    # SAC never updates here (learning_starts): only the callback's model is under test.
    agent = SAC("MlpPolicy", env, seed=0, learning_starts=200, batch_size=32, device="cpu")
    config = DynaConfig(**{**TINY.__dict__, "refit_every": 150, "rollouts": 4})
    callback = DynaCallback(config, model=name, seed=0)
    agent.learn(150, callback=callback)
    model = callback.trainer.model
    expected = model_config(name, "tiny", obs_dim=4, action_dim=1)
    assert model.config == expected  # the same config `loopwm fit --model NAME` builds
    assert model.kind == model_family(name).cls.kind
    assert callback.imagined > 0
    if name == "loopwm-fixed":
        assert model.config.halting == "fixed" and model.config.max_iters == 4
