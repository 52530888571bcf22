"""Discrete action spaces: one-hot actions in the model, a categorical actor, the dream."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import loopwm.envs  # noqa: F401  (registers loopwm/Dream-v0)
from loopwm.agents import DreamerAgent, PlannerConfig, evaluate_agent, train
from loopwm.agents.dreamer import CategoricalActor
from loopwm.collect import collect
from loopwm.envs import ActionCodec, DreamEnv, DreamVectorEnv
from loopwm.replay import Replay

from .fakes import DiscreteReachEnv, RandomAgent
from .test_agent import TINY, tiny_train_config

QUIET = dict(progress=False, tensorboard=False, video=False)


def test_the_codec_maps_discrete_actions_to_one_hot_vectors_and_back():
    codec = ActionCodec(spaces.Discrete(3, start=-1))
    assert codec.discrete and codec.dim == 3
    vectors = codec.check([-1, 1, 0], 3)
    np.testing.assert_array_equal(vectors, np.eye(3, dtype=np.float32)[[0, 2, 1]])
    np.testing.assert_array_equal(codec.to_env(vectors), [-1, 1, 0])
    assert codec.check(np.int64(1), 1).shape == (1, 3)  # a scalar for one env
    for bad in (2, -2, 0.5, np.nan):
        with pytest.raises(ValueError, match=r"integers in \[-1, 2\)"):
            codec.check(bad, 1)
    with pytest.raises(ValueError, match=r"shape \(1,\)"):
        codec.check([0, 1], 1)
    with pytest.raises(TypeError, match="n >= 2"):
        ActionCodec(spaces.Discrete(1))


def test_collect_stores_discrete_actions_one_hot(tmp_path):
    meta = collect("CartPole-v1", 300, tmp_path / "data", seed=0, progress=False)
    assert meta["action_dim"] == 2
    assert meta["action_space"] == {"discrete": 2, "start": 0}
    data = Replay.load(tmp_path / "data")
    assert set(map(tuple, data.action)) == {(0.0, 1.0), (1.0, 0.0)}
    assert data.terminated.any()  # CartPole falls


def test_categorical_actor_samples_one_hot_with_straight_through_gradients():
    torch.manual_seed(0)
    actor = CategoricalActor(latent_dim=4, n=3, hidden_dim=16)
    latent = torch.randn(64, 4)
    action, log_prob = actor.sample(latent, torch.Generator().manual_seed(0))
    assert torch.equal(action.detach().sum(-1), torch.ones(64))
    assert set(action.detach().flatten().tolist()) == {0.0, 1.0}
    (action * torch.arange(3.0)).sum().backward(retain_graph=True)  # reaches the actor
    assert actor.net[0].weight.grad.abs().sum() > 0
    assert torch.allclose(log_prob, actor.log_prob(latent, action.detach()))
    probs = actor.probs(latent)
    assert (probs >= 0.01 / 3).all()  # 1% uniform mix: never a zero probability
    assert torch.allclose(actor.entropy(latent), -(probs * probs.log()).sum(-1))
    assert torch.equal(actor.mode(latent).argmax(-1), probs.argmax(-1))


def test_the_agent_acts_in_the_discrete_space_and_refuses_a_planner():
    env = DiscreteReachEnv(start=5)
    agent = DreamerAgent(env.observation_space, env.action_space, TINY)
    action = agent.act(np.array([0.5], np.float32), explore=True)
    assert env.action_space.contains(action)
    batch = agent.act(np.zeros((4, 1), np.float32), explore=False)
    assert batch.shape == (4,) and all(env.action_space.contains(a) for a in batch)
    planning = TINY.replace(planner=PlannerConfig(kind="mppi"))
    with pytest.raises(TypeError, match="planner samples continuous"):
        DreamerAgent(env.observation_space, env.action_space, planning)


def test_a_short_run_on_a_discrete_env_beats_a_random_policy_resumes_and_evaluates(
    tmp_path, capsys
):
    from loopwm.cli import main

    config = tiny_train_config(
        env_id="loopwm-test/DiscreteReach-v0", steps=400, prefill=100, pretrain=100
    )
    config = config.replace(eval_every=400, eval_episodes=5, num_envs=2, train_ratio=0.5)
    run = tmp_path / "run"
    summary = train(config, run, **QUIET)
    replay = Replay.load(run / "replay")
    assert replay.action.shape == (400, 3) and (replay.action.sum(1) == 1).all()

    env = DiscreteReachEnv()
    env.action_space.seed(0)
    random_return = float(np.mean(evaluate_agent(RandomAgent(env), env, 20, seed=10_000)))
    assert summary["final_return_mean"] > random_return + 3.0, (summary, random_return)

    resumed = train(config.replace(steps=440), run, resume=True, **QUIET)
    assert resumed["env_steps"] == 440 and resumed["updates"] > summary["updates"]
    replay = Replay.load(run / "replay")
    assert len(replay) == 440 and (replay.action.sum(1) == 1).all()
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--episodes", "3"]) == 0
    printed = capsys.readouterr().out
    assert "over 3 episodes" in printed
    assert "60 real transitions" in printed and "1-step error" in printed  # one-hot actions


@pytest.fixture(scope="module")
def cartpole_checkpoint(tmp_path_factory):
    from loopwm.config import FitConfig
    from loopwm.fit import fit

    root = tmp_path_factory.mktemp("cartpole")
    collect("CartPole-v1", 1500, root / "data", seed=0, progress=False)
    cfg = FitConfig(steps=60, batch_size=32, horizon=4, eval_horizon=3, eval_every=0)
    fit(Replay.load(root / "data"), preset="tiny", config=cfg, out=root / "fit", progress=False)
    return root / "fit" / "model.safetensors"


def test_a_discrete_dream_passes_both_env_checkers(cartpole_checkpoint):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("loopwm/Dream-v0", checkpoint=cartpole_checkpoint)
    assert env.action_space == spaces.Discrete(2)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)  # CartPole has no MuJoCo state
        sb3_check_env(DreamEnv(cartpole_checkpoint), warn=True)
    assert [str(r.message) for r in records if "infinity" not in str(r.message)] == []
    env.reset(seed=0)
    with pytest.raises(ValueError, match="integers"):
        env.step(2)
    vector = DreamVectorEnv(cartpole_checkpoint, 3)
    vector.reset(seed=0)
    obs, reward, *_ = vector.step(np.array([0, 1, 1]))
    assert obs.shape == (3, 4) and reward.shape == (3,)


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_sb3_trains_inside_a_discrete_dream(cartpole_checkpoint, algo):
    from loopwm.agents import train_in_dream

    result = train_in_dream(cartpole_checkpoint, algo, 128, eval_episodes=1, progress=False)
    assert result["algo"] == algo and np.isfinite(result["real_return"][0])
    with pytest.raises(ValueError, match="choose --algo from"):
        train_in_dream(cartpole_checkpoint, "sac", 128, progress=False)


def test_dyna_refuses_an_agent_with_discrete_actions():
    from stable_baselines3 import DQN

    from loopwm.agents import DynaCallback

    agent = DQN("MlpPolicy", "CartPole-v1", learning_starts=10, seed=0)
    with pytest.raises(TypeError, match="Box actions"):
        agent.learn(20, callback=DynaCallback())


def test_sb3_actor_is_scored_like_the_agent():
    from stable_baselines3 import DQN

    from loopwm.agents import SB3Actor

    model = DQN("MlpPolicy", "CartPole-v1", seed=0)
    env = gym.make("CartPole-v1")
    returns = evaluate_agent(SB3Actor(model), env, 2, seed=7)
    expected = []
    for episode in range(2):
        obs, _ = env.reset(seed=7 + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(model.predict(obs, True)[0])
            total, done = total + reward, terminated or truncated
        expected.append(total)
    assert returns == expected
