import numpy as np
import pytest
import torch

from loopwm.agents import (
    DreamerAgent,
    DreamerConfig,
    PlannerConfig,
    TrainConfig,
    evaluate_agent,
    load_agent,
    train,
)
from loopwm.agents.dreamer import lambda_returns
from loopwm.agents.run import load_checkpoint
from loopwm.errors import CheckpointError
from loopwm.online_replay import OnlineReplay
from loopwm.replay import Replay

from .fakes import FloatImageEnv, GreyImageEnv, RandomAgent, ReachOriginEnv

TINY = DreamerConfig(preset="tiny", horizon=5, imagine_batch=32, hidden_dim=32)


def tiny_train_config(**changes) -> TrainConfig:
    fields = dict(
        env_id="ReachOrigin",
        steps=300,
        prefill=100,
        pretrain=20,
        train_ratio=0.5,
        eval_every=150,
        eval_episodes=2,
        checkpoint_every=100,
        log_every=50,
        agent=TINY,
    )
    return TrainConfig(**{**fields, **changes})


def fake_env(env_id: str) -> ReachOriginEnv:
    assert env_id == "ReachOrigin"
    return ReachOriginEnv()


def filled_replay(tmp_path, steps: int = 200, seed: int = 0) -> OnlineReplay:
    env = ReachOriginEnv()
    env.action_space.seed(seed)
    replay = OnlineReplay(tmp_path / "replay", obs_dim=1, action_dim=1, chunk_size=64)
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        replay.add(obs, action, reward, next_obs, terminated, truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return replay


def parameters(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def test_update_changes_losses_and_every_network(tmp_path):
    env = ReachOriginEnv()
    agent = DreamerAgent(env.observation_space, env.action_space, TINY, seed=0)
    replay = filled_replay(tmp_path)
    before = {
        name: parameters(net)
        for name, net in [
            ("world_model", agent.world_model),
            ("actor", agent.actor),
            ("critic", agent.critic),
        ]
    }
    history = [agent.update(replay) for _ in range(30)]
    first, last = history[0], history[-1]
    assert agent.updates == 30
    for name, net in [
        ("world_model", agent.world_model),
        ("actor", agent.actor),
        ("critic", agent.critic),
    ]:
        assert not torch.equal(before[name], parameters(net)), f"{name} did not change"
    for key in ("wm/loss", "actor/loss", "critic/loss", "loop/imagine_iters_mean"):
        assert np.isfinite(first[key]) and np.isfinite(last[key])
    # The world model learns: its loss falls (averaged over a few batches at each end).
    early = np.mean([m["wm/loss"] for m in history[:3]])
    late = np.mean([m["wm/loss"] for m in history[-3:]])
    assert late < 0.7 * early
    # The slow critic trails the critic (EMA), it is not a copy of it.
    assert not torch.equal(parameters(agent.slow_critic), parameters(agent.critic))


@pytest.mark.parametrize("actor_grad", ["dynamics", "reinforce"])
def test_actor_critic_update_sends_no_gradient_into_the_world_model(tmp_path, actor_grad):
    env = ReachOriginEnv()
    agent = DreamerAgent(
        env.observation_space, env.action_space, TINY.replace(actor_grad=actor_grad)
    )
    replay = filled_replay(tmp_path)
    agent.prepare(replay)
    before = parameters(agent.world_model)
    agent.update_actor_critic(replay)
    assert torch.equal(before, parameters(agent.world_model))
    assert all(p.grad is None for p in agent.world_model.parameters())
    assert all(p.requires_grad for p in agent.world_model.parameters())  # restored after


def test_the_agents_world_model_squashes_observations_unless_told_otherwise():
    env = ReachOriginEnv()
    agent = DreamerAgent(env.observation_space, env.action_space, TINY)
    assert agent.world_model.config.obs_symlog
    plain = TINY.replace(model_overrides={"obs_symlog": False})
    assert not DreamerAgent(
        env.observation_space, env.action_space, plain
    ).world_model.config.obs_symlog


def test_reinforce_gradient_updates_the_actor(tmp_path):
    env = ReachOriginEnv()
    agent = DreamerAgent(
        env.observation_space, env.action_space, TINY.replace(actor_grad="reinforce"), seed=0
    )
    replay = filled_replay(tmp_path)
    before = parameters(agent.actor)
    metrics = agent.update(replay)
    assert np.isfinite(metrics["actor/loss"])
    assert not torch.equal(before, parameters(agent.actor))


def test_imagination_respects_horizon_and_reports_loop_iterations():
    env = ReachOriginEnv()
    agent = DreamerAgent(env.observation_space, env.action_space, TINY, seed=0)
    start = agent.world_model.encode(torch.zeros(4, 1))
    rollout = agent.imagine(start, 7, grad=False)
    latent_dim = agent.world_model.config.latent_dim
    assert rollout.latent.shape == (4, 8, latent_dim)
    assert rollout.action.shape == (4, 7, 1)
    assert rollout.reward.shape == rollout.cont.shape == rollout.iters.shape == (4, 7)
    assert torch.equal(rollout.latent[:, 0], start)
    assert (rollout.iters >= 1).all() and (
        rollout.iters <= agent.world_model.config.max_iters
    ).all()
    assert rollout.action.abs().max() <= 1.0


def test_lambda_returns_match_a_hand_computation():
    reward = torch.tensor([[1.0, 2.0]])
    cont = torch.tensor([[1.0, 0.0]])
    value = torch.tensor([[0.0, 10.0, 20.0]])
    gamma, lam = 0.9, 0.5
    returns = lambda_returns(reward, cont, value, gamma, lam)
    last = 2.0  # the episode ends after step 1: no bootstrap
    first = 1.0 + gamma * ((1 - lam) * 10.0 + lam * last)
    assert torch.allclose(returns, torch.tensor([[first, last]]))


@pytest.mark.parametrize("kind", ["mppi", "cem"])
def test_planner_actions_stay_inside_the_action_bounds(kind):
    env = ReachOriginEnv(low=-2.0, high=4.0)
    config = TINY.replace(planner=PlannerConfig(kind=kind, samples=32, policy_samples=4, elites=8))
    agent = DreamerAgent(env.observation_space, env.action_space, config, seed=0)
    actions = []
    for i, x in enumerate(np.linspace(-1, 1, 6)):
        obs = np.array([x], np.float32)
        actions.append(agent.act(obs, explore=bool(i % 2)))
    actions = np.stack(actions)
    assert actions.shape == (6, 1)
    assert (actions >= -2.0).all() and (actions <= 4.0).all()
    assert agent.planner.previous_plan is not None
    agent.reset()
    assert agent.planner.previous_plan is None


def test_short_training_run_beats_a_random_policy(tmp_path):
    config = tiny_train_config(steps=700, prefill=200, pretrain=100, train_ratio=1.0)
    config = TrainConfig.from_dict({**config.to_dict(), "eval_every": 700, "eval_episodes": 5})
    summary = train(
        config, tmp_path / "run", make_env=fake_env, progress=False, tensorboard=False, video=False
    )
    trained = summary["final_return_mean"]

    env = ReachOriginEnv()
    env.action_space.seed(0)
    random_return = float(np.mean(evaluate_agent(RandomAgent(env), env, 20, seed=10_000)))
    assert trained > random_return + 3.0, (trained, random_return)


class InterruptedEnv(ReachOriginEnv):
    """Raises KeyboardInterrupt (a Ctrl-C) at its ``at``-th step."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.steps = at, 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.at:
            raise KeyboardInterrupt
        return super().step(action)


def test_interrupt_and_resume_keep_counters_and_every_stored_transition(tmp_path):
    run = tmp_path / "run"
    config = tiny_train_config()
    common = dict(progress=False, tensorboard=False, video=False)
    with pytest.raises(KeyboardInterrupt):
        train(config, run, make_env=lambda _: InterruptedEnv(at=251), **common)
    on_disk = Replay.load(run / "replay")
    assert len(on_disk) == 250 and on_disk.truncated[-1]  # all 250 steps, the last cut short
    checkpoint = load_checkpoint(run / "agent.pt")
    assert checkpoint["counters"]["env_steps"] == 200  # the last checkpoint
    updates_at_checkpoint = int(checkpoint["agent"]["updates"])

    summary = train(None, run, resume=True, make_env=fake_env, **common)
    assert summary["env_steps"] == 300
    replay = Replay.load(run / "replay")
    assert len(replay) == 300
    for field in ("obs", "action", "reward", "next_obs", "truncated"):
        np.testing.assert_array_equal(getattr(replay, field)[:250], getattr(on_disk, field))
    assert replay.episode[250] == replay.episode[249] + 1  # a new episode after the resume
    # The step counter resumes at 250 (every stored step counts), the agent from its
    # checkpoint at 200, owed the updates of steps 200..300 at 0.5 per step.
    assert summary["updates"] == updates_at_checkpoint + 50
    assert [e["env_steps"] for e in summary["evaluations"]] == [150, 300]


def test_resume_refuses_a_run_of_another_env(tmp_path):
    run = tmp_path / "run"
    common = dict(make_env=fake_env, progress=False, tensorboard=False, video=False)
    train(tiny_train_config(steps=120, eval_every=120), run, **common)
    other = TrainConfig(env_id="InvertedPendulum-v5")
    with pytest.raises(ValueError, match="run of ReachOrigin"):
        train(other, run, resume=True, **common)
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_train_config(), run, **common)


def test_corrupt_agent_checkpoint_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    common = dict(make_env=fake_env, progress=False, tensorboard=False, video=False)
    train(tiny_train_config(steps=120, eval_every=120), run, **common)
    data = (run / "agent.pt").read_bytes()
    (run / "agent.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="agent.pt"):
        train(None, run, resume=True, **common)


@pytest.mark.parametrize(
    ("env_class", "message"),
    [
        (FloatImageEnv, r"must be uint8 \(H, W, C\) pixels"),
        (GreyImageEnv, "add a channel axis"),
    ],
)
def test_unsupported_spaces_fail_at_start(tmp_path, env_class, message):
    env = env_class()
    with pytest.raises(TypeError, match=message):
        DreamerAgent(env.observation_space, env.action_space)
    with pytest.raises(TypeError, match=message):
        train(
            tiny_train_config(),
            tmp_path / "run",
            make_env=lambda _: env_class(),
            progress=False,
            tensorboard=False,
            video=False,
        )
    assert not (tmp_path / "run").exists()  # nothing written


def test_act_rejects_bad_observations():
    env = ReachOriginEnv()
    agent = DreamerAgent(env.observation_space, env.action_space, TINY)
    with pytest.raises(ValueError, match="shape"):
        agent.act(np.zeros(3, np.float32), explore=False)
    with pytest.raises(ValueError, match="NaN"):
        agent.act(np.array([np.nan], np.float32), explore=False)


def test_load_agent_restores_the_trained_policy(tmp_path):
    run = tmp_path / "run"
    common = dict(progress=False, tensorboard=False, video=False)
    train(tiny_train_config(steps=150, env_id="loopwm-test/Reach-v0"), run, **common)
    agent, config, counters = load_agent(run)  # makes the run's env to read its spaces
    assert config.env_id == "loopwm-test/Reach-v0" and counters["env_steps"] == 150
    obs = np.array([0.5], np.float32)
    again, _, _ = load_agent(run)
    assert np.array_equal(agent.act(obs, explore=False), again.act(obs, explore=False))


def test_final_video_falls_back_to_real_frames_where_imagination_cannot_render(tmp_path):
    import gymnasium as gym
    import imageio.v3 as iio

    from loopwm.agents.train import final_video

    env = gym.make("Pendulum-v1")  # classic control: no MuJoCo state to draw imagination in
    agent = DreamerAgent(env.observation_space, env.action_space, TINY)
    path = final_video(agent, TrainConfig(env_id="Pendulum-v1"), tmp_path)
    frames = iio.imread(path)
    assert frames.shape[0] == 200
    assert frames.shape[1] % 16 == 0 and frames.shape[2] % 16 == 0


def test_resume_of_a_run_killed_before_its_first_chunk(tmp_path):
    run = tmp_path / "run"
    common = dict(progress=False, tensorboard=False, video=False)
    with pytest.raises(KeyboardInterrupt):  # before any transition is stored
        train(tiny_train_config(), run, make_env=lambda _: InterruptedEnv(at=1), **common)
    summary = train(None, run, resume=True, make_env=fake_env, **common)
    assert summary["env_steps"] == 300 and len(Replay.load(run / "replay")) == 300


def test_resume_after_the_last_step_still_evaluates_and_checkpoints(tmp_path):
    run = tmp_path / "run"
    common = dict(progress=False, tensorboard=False, video=False)
    made = []

    def env_then_broken_eval_env(env_id):  # the 2nd env made is the evaluation env
        made.append(env_id)
        return ReachOriginEnv() if len(made) == 1 else InterruptedEnv(at=1)

    config = tiny_train_config(steps=150, eval_every=150, checkpoint_every=100)
    with pytest.raises(KeyboardInterrupt):  # killed in the final evaluation
        train(config, run, make_env=env_then_broken_eval_env, **common)
    checkpoint = load_checkpoint(run / "agent.pt")
    assert checkpoint["counters"]["checkpoint_steps"] == 100
    assert len(Replay.load(run / "replay")) == 150

    summary = train(None, run, resume=True, make_env=fake_env, **common)
    assert summary["env_steps"] == 150
    assert [e["env_steps"] for e in summary["evaluations"]] == [150]
    assert load_checkpoint(run / "agent.pt")["counters"]["checkpoint_steps"] == 150
    # The updates owed for steps 100..150 (0.5 per step) ran before the evaluation.
    assert summary["updates"] == checkpoint["agent"]["updates"] + 25


def test_a_bad_setting_fails_before_the_run_folder_is_written(tmp_path):
    config = tiny_train_config(agent=TINY.replace(model_overrides={"no_such_field": 1}))
    with pytest.raises(ValueError, match="no_such_field"):
        train(config, tmp_path / "run", make_env=fake_env, progress=False, video=False)
    assert not (tmp_path / "run" / "config.json").exists()


def test_mppi_with_a_single_elite_gives_finite_actions():
    env = ReachOriginEnv()
    planner = PlannerConfig(kind="mppi", samples=8, policy_samples=0, elites=1, iterations=2)
    agent = DreamerAgent(env.observation_space, env.action_space, TINY.replace(planner=planner))
    action = agent.act(np.array([0.3], np.float32), explore=True)
    assert np.isfinite(action).all()


def test_reward_threshold_ends_the_run_and_a_resume_needs_a_larger_budget(tmp_path):
    run = tmp_path / "run"
    common = dict(make_env=fake_env, progress=False, tensorboard=False, video=False)
    # Any return of the fake env (at worst -20 over 20 steps) reaches -100.
    config = tiny_train_config(steps=300, eval_every=150, reward_threshold=-100.0)
    summary = train(config, run, **common)
    assert summary["stopped"] == "reward_threshold" and summary["env_steps"] == 150
    assert [e["env_steps"] for e in summary["evaluations"]] == [150]
    checkpoint = load_checkpoint(run / "agent.pt")
    assert checkpoint["counters"]["checkpoint_steps"] == 150  # the final checkpoint is written
    assert len(Replay.load(run / "replay")) == 150

    stored = (run / "config.json").read_text()
    with pytest.raises(ValueError, match="reached the reward threshold"):
        train(None, run, resume=True, **common)
    with pytest.raises(ValueError, match="above 300"):
        train(config, run, resume=True, **common)
    with pytest.raises(ValueError, match="already taken 150 real steps"):
        train(config.replace(steps=100), run, resume=True, **common)
    assert (run / "config.json").read_text() == stored  # a refused resume changes nothing
    longer = config.replace(steps=400, stop_at_threshold=False)
    summary = train(longer, run, resume=True, **common)
    assert summary["stopped"] == "steps" and summary["env_steps"] == 400


def test_without_a_threshold_the_run_uses_its_whole_budget(tmp_path):
    config = tiny_train_config(steps=150, eval_every=150, stop_at_threshold=True)
    summary = train(
        config, tmp_path / "run", make_env=fake_env, progress=False, tensorboard=False, video=False
    )
    assert summary["reward_threshold"] is None  # the fake env's spec has none
    assert summary["stopped"] == "steps" and summary["env_steps"] == 150


def test_a_kill_between_the_final_checkpoints_files_is_repaired_on_resume(tmp_path, monkeypatch):
    import loopwm.agents.run as run_module
    from loopwm import load

    run = tmp_path / "run"
    common = dict(make_env=fake_env, progress=False, tensorboard=False, video=False)
    config = tiny_train_config(steps=150, eval_every=150, checkpoint_every=100)
    original, calls = run_module.save, []

    def killed_at_the_second_model_file(model, path, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the final checkpoint: after agent.pt, before model.safetensors
            raise KeyboardInterrupt
        original(model, path, **kwargs)

    monkeypatch.setattr(run_module, "save", killed_at_the_second_model_file)
    with pytest.raises(KeyboardInterrupt):
        train(config, run, **common)
    assert load_checkpoint(run / "agent.pt")["counters"]["checkpoint_steps"] == 150
    assert not run_module.checkpoint_complete(run)  # model.safetensors is still step 100's
    (run / ".agent.pt.x1y2.tmp").write_bytes(b"left by a killed atomic write")

    monkeypatch.setattr(run_module, "save", original)
    train(None, run, resume=True, **common)
    assert run_module.checkpoint_complete(run)
    assert not (run / ".agent.pt.x1y2.tmp").exists()
    model = load(run / "model.safetensors")
    saved = load_checkpoint(run / "agent.pt")["agent"]["world_model"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name]), name  # the model file matches the agent


def test_a_refused_resume_touches_neither_config_nor_replay(tmp_path):
    run = tmp_path / "run"
    common = dict(progress=False, tensorboard=False, video=False)
    with pytest.raises(KeyboardInterrupt):  # killed at step 250, checkpointed at 200
        train(tiny_train_config(), run, make_env=lambda _: InterruptedEnv(at=251), **common)
    before = {p.name: p.read_bytes() for p in [*run.glob("*.json"), *run.glob("replay/*")]}
    with pytest.raises(ValueError, match="already taken 250 real steps"):
        train(tiny_train_config(steps=200), run, resume=True, make_env=fake_env, **common)
    after = {p.name: p.read_bytes() for p in [*run.glob("*.json"), *run.glob("replay/*")]}
    assert after == before


def test_training_is_deterministic_for_a_seed(tmp_path):
    common = dict(make_env=fake_env, progress=False, tensorboard=False, video=False)
    config = tiny_train_config(steps=150, eval_every=150)
    first = train(config, tmp_path / "a", **common)
    second = train(config, tmp_path / "b", **common)
    assert first["evaluations"][-1]["returns"] == second["evaluations"][-1]["returns"]
    a = load_checkpoint(tmp_path / "a" / "agent.pt")["agent"]
    b = load_checkpoint(tmp_path / "b" / "agent.pt")["agent"]
    for part in ("world_model", "actor", "critic"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name}"
