"""Dyna/MBPO-style SB3 training: real data in, imagined transitions out."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO, SAC

from loopwm.agents.dyna import DynaCallback, DynaConfig
from loopwm.config import FitConfig

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
