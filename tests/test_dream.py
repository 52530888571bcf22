"""The world model as a gymnasium environment (single and batched)."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import loopwm.envs  # noqa: F401  (registers loopwm/Dream-v0)
from loopwm import LoopWM, LoopWMConfig, load, save
from loopwm.envs import DreamEnv, DreamVectorEnv

# Properties of the real InvertedPendulum-v5 spaces that the dream inherits on purpose.
REAL_ENV_WARNINGS = ("symmetric and normalized", "infinity", "unbounded", "[-1, 1]")


def relevant(records):
    return [
        str(r.message) for r in records if not any(k in str(r.message) for k in REAL_ENV_WARNINGS)
    ]


def test_gymnasium_env_checker_passes(pendulum_checkpoint):
    from gymnasium.utils.env_checker import check_env

    env = gym.make("loopwm/Dream-v0", checkpoint=pendulum_checkpoint).unwrapped
    assert isinstance(env, DreamEnv)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        check_env(env)  # also re-makes it with render_mode="rgb_array" from its spec
    assert relevant(records) == []


def test_sb3_env_checker_passes(pendulum_checkpoint):
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        check_env(DreamEnv(pendulum_checkpoint), warn=True)
    assert relevant(records) == []


def test_spaces_are_the_real_envs_and_info_has_loop_stats(pendulum_checkpoint):
    env = gym.make("loopwm/Dream-v0", checkpoint=pendulum_checkpoint)
    real = gym.make("InvertedPendulum-v5")
    assert env.observation_space == real.observation_space
    assert env.action_space == real.action_space
    assert env.spec.id == "loopwm/Dream-v0"
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and isinstance(reward, float)
    assert info["loop_iters"] >= 1 and info["residual"] >= 0


def test_seeding_is_deterministic(pendulum_checkpoint):
    def rollout(seed):
        env = DreamEnv(pendulum_checkpoint)
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        for t in range(20):
            obs, reward, *_ = env.step(np.array([np.sin(t)]))
            trace += [obs, [reward]]
        return np.concatenate([np.ravel(x) for x in trace])

    np.testing.assert_array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


def test_termination_from_continuation_head_and_time_limit(pendulum_checkpoint):
    always = DreamEnv(pendulum_checkpoint, cont_threshold=1.0)
    always.reset(seed=0)
    assert always.step(np.zeros(1))[2] is True
    never = gym.make(
        "loopwm/Dream-v0", checkpoint=pendulum_checkpoint, cont_threshold=0.0, max_episode_steps=3
    )
    never.reset(seed=0)
    flags = [never.step(np.zeros(1))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    default_limit = gym.make("loopwm/Dream-v0", checkpoint=pendulum_checkpoint)
    assert default_limit.spec.max_episode_steps == 1000  # the real env's time limit


def constant_continuation(checkpoint, p: float):
    """The checkpoint's model with a continuation head that predicts ``p`` everywhere."""
    model = load(checkpoint)
    last = [m for m in model.cont_head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(float(np.log(p / (1 - p))))
    return model


def test_sampled_termination_ends_episodes_with_the_predicted_probability(pendulum_checkpoint):
    model = constant_continuation(pendulum_checkpoint, 0.7)
    # the threshold rule never ends an episode the model continues with probability 0.7
    threshold = DreamVectorEnv(model, 400, env_id="InvertedPendulum-v5")
    threshold.reset(seed=0)
    assert not threshold.step(np.zeros((400, 1)))[2].any()
    # sampled: 30% end at each step (400 draws: 5 standard deviations is 0.11), seeded
    sampled = [
        DreamVectorEnv(model, 400, env_id="InvertedPendulum-v5", termination="sample")
        for _ in range(2)
    ]
    ends = []
    for env in sampled:
        env.reset(seed=3)
        ends.append(env.step(np.zeros((400, 1)))[2])
    assert abs(ends[0].mean() - 0.3) < 0.11
    np.testing.assert_array_equal(ends[0], ends[1])
    single = DreamEnv(model, env_id="InvertedPendulum-v5", termination="sample")
    lengths = []
    for seed in range(200):
        single.reset(seed=seed)
        steps = 1
        while not single.step(np.zeros(1))[2]:
            steps += 1
        lengths.append(steps)
    assert abs(np.mean(lengths) - 1 / 0.3) < 0.6  # geometric: mean 3.3, std of the mean 0.2
    with pytest.raises(ValueError, match="termination must be one of"):
        DreamEnv(model, env_id="InvertedPendulum-v5", termination="never")


def test_dream_episodes_can_be_longer_than_the_real_envs(pendulum_checkpoint):
    # gym.make's max_episode_steps sits outside the entry point's TimeLimit; episode_steps
    # is the entry point's own and replaces the real env's limit of 1000
    env = gym.make(
        "loopwm/Dream-v0", checkpoint=pendulum_checkpoint, cont_threshold=0.0, episode_steps=1002
    )
    env.reset(seed=0)
    truncated = [env.step(np.zeros(1))[3] for _ in range(1002)]
    assert not any(truncated[:1001]) and truncated[1001]
    with pytest.raises(ValueError, match="episode_steps"):
        gym.make("loopwm/Dream-v0", checkpoint=pendulum_checkpoint, episode_steps=0)


def test_actions_are_clipped_and_bad_actions_rejected(pendulum_checkpoint):
    def first_step(action):
        env = DreamEnv(pendulum_checkpoint)
        env.reset(seed=0)
        return env.step(action)[0]

    np.testing.assert_array_equal(first_step(np.array([100.0])), first_step(np.array([3.0])))
    env = DreamEnv(pendulum_checkpoint)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(1))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(2))


def test_checkpoint_that_does_not_match_the_env_is_refused(pendulum_checkpoint):
    with pytest.raises(
        ValueError, match="HalfCheetah-v5 has 17-dim observations .* and 6-dim actions"
    ):
        DreamEnv(pendulum_checkpoint, env_id="HalfCheetah-v5")
    model = LoopWM(LoopWMConfig.preset("tiny", obs_dim=4, action_dim=1))
    with pytest.raises(ValueError, match="env_id is required"):
        DreamEnv(model)
    with pytest.raises(ValueError, match="start_states"):
        DreamEnv(pendulum_checkpoint, start_states=np.zeros((5, 3)))


def test_start_states_from_stored_data(pendulum_checkpoint, pendulum_dir, pendulum_data):
    env = DreamEnv(pendulum_checkpoint, start_states=pendulum_dir)
    stored = pendulum_data.obs.astype(np.float64)
    terminal = pendulum_data.next_obs[pendulum_data.terminated].astype(np.float64)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert np.isclose(stored, obs).all(axis=1).any()
        assert not np.isclose(terminal, obs).all(axis=1).any()  # never a fallen pole


def test_vector_env_matches_single_env(pendulum_checkpoint):
    starts = np.array([[0.01, -0.02, 0.03, 0.0]])
    single = DreamEnv(pendulum_checkpoint, start_states=starts, cont_threshold=0.0)
    vec = DreamVectorEnv(pendulum_checkpoint, 5, start_states=starts, cont_threshold=0.0)
    obs1, _ = single.reset(seed=0)
    obsv, _ = vec.reset(seed=0)
    np.testing.assert_allclose(obsv, np.repeat(obs1[None], 5, 0))
    for t in range(10):
        action = np.array([np.cos(t)])
        o1, r1, *_ = single.step(action)
        ov, rv, term, trunc, infos = vec.step(np.repeat(action[None], 5, 0))
        np.testing.assert_allclose(ov, np.repeat(o1[None], 5, 0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rv, r1, rtol=1e-5, atol=1e-6)
        assert infos["loop_iters"].shape == (5,) and (infos["loop_iters"] >= 1).all()


def test_vector_env_next_step_autoreset(pendulum_checkpoint):
    vec = gym.make_vec(
        "loopwm/Dream-v0",
        num_envs=4,
        checkpoint=pendulum_checkpoint,
        cont_threshold=0.0,
        max_episode_steps=2,
    )
    assert isinstance(vec.unwrapped, DreamVectorEnv)
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    vec.reset(seed=0)
    a = np.zeros((4, 1))
    assert not vec.step(a)[3].any()
    obs, reward, term, trunc, infos = vec.step(a)
    assert trunc.all() and not term.all()
    obs, reward, term, trunc, infos = vec.step(a)  # the reset step
    assert (reward == 0).all() and not term.any() and not trunc.any()
    assert (infos["loop_iters"] == 0).all()
    assert not vec.step(a)[3].any()  # the counter restarted

    ends = DreamVectorEnv(pendulum_checkpoint, 3, cont_threshold=1.0)
    ends.reset(seed=1)
    assert ends.step(np.zeros((3, 1)))[2].all()
    with pytest.raises(ValueError, match="shape"):
        ends.step(np.zeros((2, 1)))


def test_vector_env_seeding(pendulum_checkpoint):
    a = DreamVectorEnv(pendulum_checkpoint, 3)
    b = DreamVectorEnv(pendulum_checkpoint, 3)
    np.testing.assert_array_equal(a.reset(seed=5)[0], b.reset(seed=5)[0])
    actions = np.linspace(-1, 1, 3)[:, None]
    np.testing.assert_array_equal(a.step(actions)[0], b.step(actions)[0])


def test_sb3_ppo_trains_in_the_dream_and_runs_on_the_real_env(pendulum_checkpoint):
    from stable_baselines3 import PPO

    env = gym.make("loopwm/Dream-v0", checkpoint=pendulum_checkpoint)
    agent = PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.learn(128)
    assert agent.num_timesteps == 128
    assert any(
        not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters(), strict=True)
    )
    real = gym.make("InvertedPendulum-v5")
    obs, _ = real.reset(seed=0)
    action, _ = agent.predict(obs, deterministic=True)
    assert real.action_space.contains(action.astype(np.float32))
    real.step(action)


def test_render_imagined_state(pendulum_checkpoint, tmp_path):
    env = DreamEnv(pendulum_checkpoint, render_mode="rgb_array", render_size=(64, 64))
    env.reset(seed=0)
    first = env.render()
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    for _ in range(5):
        env.step(np.array([3.0]))
    assert not np.array_equal(first, env.render())

    model = LoopWM(LoopWMConfig.preset("tiny", obs_dim=3, action_dim=1))
    save(model, tmp_path / "pendulum.safetensors", extra={"env_id": "Pendulum-v1"})
    plain = DreamEnv(load(tmp_path / "pendulum.safetensors"))  # no rendering: fine
    plain.reset(seed=0)
    with pytest.raises(ValueError, match="cannot render imagined states of Pendulum"):
        DreamEnv(tmp_path / "pendulum.safetensors", render_mode="rgb_array")


def test_info_carries_the_continuation_and_huge_start_states_are_refused(pendulum_checkpoint):
    env = DreamEnv(pendulum_checkpoint)
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(np.zeros(1, np.float32))
    assert 0.0 <= info["cont"] <= 1.0
    assert terminated == (info["cont"] < 0.5)
    huge = DreamEnv(pendulum_checkpoint, start_states=np.full((2, 4), 1e30))
    with pytest.raises(ValueError, match="non-finite latent"):
        huge.reset(seed=0)


def test_train_in_dream_refuses_zero_evaluation_episodes(pendulum_checkpoint, tmp_path):
    from loopwm.agents import train_in_dream

    with pytest.raises(ValueError, match="eval_episodes"):
        train_in_dream(pendulum_checkpoint, "ppo", 64, eval_episodes=0, out=tmp_path)
    assert not (tmp_path / "dream.json").exists()


def test_vector_env_seeds_each_env_with_its_own_entry(pendulum_checkpoint):
    vec = DreamVectorEnv(pendulum_checkpoint, 3)
    one = DreamVectorEnv(pendulum_checkpoint, 1)
    obs, _ = vec.reset(seed=[7, 8, 9])
    for i, seed in enumerate([7, 8, 9]):
        np.testing.assert_array_equal(obs[i], one.reset(seed=[seed])[0][0])
    swapped, _ = vec.reset(seed=[9, 8, 7])
    np.testing.assert_array_equal(swapped, obs[::-1])
    with pytest.raises(ValueError, match="3 ints"):
        vec.reset(seed=[1, 2])


def test_an_extrapolating_dream_starts_each_loop_from_the_last_two_latents(pendulum_checkpoint):
    model = load(pendulum_checkpoint)
    model.config = model.config.replace(warm_start="extrapolate")
    vec = DreamVectorEnv(model, 3, cont_threshold=0.0, max_episode_steps=2)
    vec.reset(seed=0)
    actions = np.array([[0.5], [-0.5], [0.0]])
    a = torch.as_tensor(actions, dtype=torch.float32)
    start = vec._latent.clone()
    first = vec.step(actions)[4]["loop_iters"]
    assert np.array_equal(first, model.step(start, a).iters.numpy())  # no h_{t-1} yet
    after = vec._latent.clone()
    second = vec.step(actions)[4]["loop_iters"]
    from_both = model.step(after, a, previous=start).iters.numpy()
    assert np.array_equal(second, from_both)
    assert not np.array_equal(from_both, model.step(after, a).iters.numpy())
    vec.step(actions)  # the autoreset step: each env starts afresh ...
    restart = vec._latent.clone()
    third = vec.step(actions)[4]["loop_iters"]
    assert np.array_equal(third, model.step(restart, a).iters.numpy())  # ... without a past
