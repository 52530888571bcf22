"""Ensembles: batched members, their disagreement, and the dream's penalty and truncation."""

import dataclasses
import json
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from loopwm.agents import DreamerAgent, DreamerConfig
from loopwm.agents.dyna import DynaConfig
from loopwm.baselines import gru_ensemble
from loopwm.checkpoint import load, save
from loopwm.config import FitConfig
from loopwm.envs.dream import DreamEnv, DreamVectorEnv
from loopwm.errors import CheckpointError, ConfigError
from loopwm.fit import fit
from loopwm.models import MODEL_NAMES, build_model, model_config
from loopwm.networks import symexp
from loopwm.solver import certified_stop, solve
from loopwm.training import spearman, world_model_loss
from tests.conftest import random_batch


def _model(name: str, members: int, **overrides):
    torch.manual_seed(0)
    fields = {"ensemble": members, **overrides}
    config = model_config(name, "tiny", obs_dim=5, action_dim=2, overrides=fields)
    return build_model(name, config)


@pytest.fixture(scope="module")
def ensemble_checkpoint(pendulum_data, tmp_path_factory):
    """A tiny 3-member LoopWM fitted briefly on the pendulum data."""
    out = tmp_path_factory.mktemp("ensemble_fit")
    cfg = FitConfig(steps=150, batch_size=32, horizon=4, eval_horizon=3, eval_every=0)
    _, metrics = fit(
        pendulum_data,
        preset="tiny",
        model_overrides={"ensemble": 3},
        config=cfg,
        out=out,
        progress=False,
    )
    return out / "model.safetensors", metrics


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_family_steps_an_ensemble_and_reports_disagreement(name):
    model = _model(name, 3).eval()
    latent = model.encode(torch.randn(6, 5))
    out = model.step(latent, torch.rand(6, 2) * 2 - 1)
    assert out.members.shape == (3, 6, 16)
    torch.testing.assert_close(out.latent, out.members.mean(0))
    assert out.uncertainty.shape == (6,) and (out.uncertainty > 0).all()
    # each member reads its own latent with its own reward and continuation heads
    heads = [
        (m_reward(h).squeeze(-1), torch.sigmoid(m_cont(h).squeeze(-1)))
        for m_reward, m_cont, h in zip(
            model.reward_head.members, model.cont_head.members, out.members, strict=True
        )
    ]
    rewards = torch.stack([r for r, _ in heads])  # (3, 6)
    conts = torch.stack([c for _, c in heads])
    torch.testing.assert_close(out.reward_symlog, rewards.mean(0))
    torch.testing.assert_close(out.cont, conts.mean(0))
    assert (rewards.std(0) > 0).all()  # the members' heads differ
    predicted = torch.cat([model.decoder(out.members), rewards[..., None], conts[..., None]], -1)
    expected = predicted.std(0, correction=0).pow(2).mean(-1).sqrt()
    torch.testing.assert_close(out.uncertainty, expected)
    torch.testing.assert_close(model.disagreement(out.members), expected)
    single = _model(name, 1).eval().step(latent[:, :16], torch.zeros(6, 2))
    assert single.members is None and single.uncertainty is None
    # one member per sample: its latent and its own heads' reward and continuation
    member = torch.tensor([2, 0, 1, 1, 0, 2])
    followed = out.follow(member)
    for b, k in enumerate(member.tolist()):
        torch.testing.assert_close(followed.latent[b], out.members[k, b])
        torch.testing.assert_close(followed.reward_symlog[b], rewards[k, b])
        torch.testing.assert_close(followed.cont[b], conts[k, b])
    torch.testing.assert_close(followed.uncertainty, out.uncertainty)  # still the ensemble's
    with pytest.raises(ConfigError, match="ensemble"):
        single.follow(member)


def test_masked_solve_of_stacked_members_equals_per_member_halting():
    model = _model("loopwm", 3).eval()
    block = model.block
    stacked = block.weights()
    inject = model.prelude(torch.randn(7, 16 + 2))
    projected = block.project(inject, stacked)  # (3, 7, D + H)
    start = torch.randn(7, 16)
    stop = certified_stop(stacked.contraction, 1e-3)
    together = solve(
        partial(block.iterate, stacked),
        start.expand(3, 7, 16),
        projected,
        max_iters=16,
        stop=stop,
    )
    for k, member in enumerate(block.members):
        w = member.weights()
        alone = solve(
            partial(member.iterate, w), start, member.project(inject, w), max_iters=16, stop=stop
        )
        torch.testing.assert_close(together.latent[k], alone.latent, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(together.iters[k], alone.iters)
        torch.testing.assert_close(together.residual[k], alone.residual, atol=1e-6, rtol=1e-5)
    assert together.iters.unique().numel() > 1  # samples halted at different iterations


def test_batched_gru_members_equal_their_cells():
    model = _model("gru", 4)
    inject, latent = torch.randn(5, 16), torch.randn(5, 16)
    batched = gru_ensemble(model.cells, inject, latent)
    for k, cell in enumerate(model.cells):
        torch.testing.assert_close(batched[k], cell(inject, latent))


def test_each_member_keeps_its_own_certificate_and_the_bound_is_the_largest():
    model = _model("loopwm", 4, c_max=0.8, a_max=0.3)
    with torch.no_grad():  # push every member past its budget: each is clipped to its own
        for k, member in enumerate(model.block.members):
            for weight in member.x_matrices():
                weight.mul_(10.0 * (k + 1))
    bounds = [member.certificate()[0] for member in model.block.members]
    assert max(bounds) <= 0.8
    assert model.contraction_bound() == pytest.approx(max(bounds))


def test_a_decoder_free_ensemble_disagrees_in_latent_space_and_never_runs_its_decoder():
    from loopwm.training import WorldModelTrainer

    model = _model("loopwm", 3).train()
    WorldModelTrainer(model, FitConfig(horizon=3, loss_weights={"obs": 0}))  # marks it
    assert not model.decodes
    batch = random_batch(model.config)
    loss, metrics = world_model_loss(model, batch, FitConfig(horizon=3, loss_weights={"obs": 0}))
    loss.backward()
    assert "wm/obs_loss" not in metrics
    assert all(p.grad is None for p in model.decoder.parameters())
    with torch.no_grad():
        out = model.step(model.encode(batch["obs0"]), batch["action"][:, 0])
    # the members' spread is measured on their latents (and heads), not on decoded obs
    assert out.member_obs.shape == out.members.shape
    assert (out.uncertainty > 0).all() and torch.isfinite(out.uncertainty).all()


def test_training_scores_every_member_on_its_own_prediction():
    model = _model("loopwm", 3).train()
    batch = random_batch(model.config)
    loss, _ = world_model_loss(model, batch, FitConfig(horizon=3))
    loss.backward()
    for member in model.block.members:  # every member learns, not only their mean
        assert member.x_in.weight.grad.abs().sum() > 0
    # members are not trained through their mean only: the loss is not the mean's loss
    with torch.no_grad():
        mean_only = _mean_only_loss(model, batch)
    assert float(loss.detach()) > float(mean_only)


def _mean_only_loss(model, batch):
    """The same loss with each member replaced by the members' mean (smaller by Jensen)."""
    original = model.step

    def step(latent, action, **kwargs):
        out = original(latent, action, **kwargs)
        out.members = out.latent.expand_as(out.members)
        return out

    model.step = step
    try:
        return world_model_loss(model, batch, FitConfig(horizon=3))[0]
    finally:
        del model.step


def test_fitted_members_differ_and_agree_more_on_data_than_far_from_it(
    ensemble_checkpoint, pendulum_data
):
    path, metrics = ensemble_checkpoint
    model = load(path)
    assert model.config.ensemble == 3
    held = metrics["heldout"]
    assert held["uncertainty_mean_1"] > 0
    assert -1 <= held["uncertainty_spearman_1"] <= 1 and -1 <= held["residual_spearman_1"] <= 1
    obs = torch.as_tensor(pendulum_data.obs[:500], dtype=torch.float32)
    action = torch.as_tensor(pendulum_data.action[:500], dtype=torch.float32)
    with torch.no_grad():
        near = model.step(model.encode(obs), action).uncertainty
        far = model.step(model.encode(obs * 20 + 5), action * 0 + 1).uncertainty
    assert (near > 0).all()
    assert far.mean() > 3 * near.mean()


def test_ensemble_checkpoint_round_trips_bit_for_bit(tmp_path):
    model = _model("loopwm", 3)
    save(model, tmp_path / "m.safetensors")
    loaded = load(tmp_path / "m.safetensors")
    assert loaded.config.ensemble == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_checkpoint_whose_header_names_another_ensemble_size_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save(_model("loopwm", 3), path)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    config = json.loads(meta["config"])
    config["ensemble"] = 2
    save_file(load_file(str(path)), path, metadata={**meta, "config": json.dumps(config)})
    with pytest.raises(CheckpointError, match="ensemble of 3 member"):
        load(path)


def test_an_ensemble_whose_members_share_their_heads_is_refused(tmp_path):
    """The layout before each member had its own reward and continuation heads."""
    path = tmp_path / "m.safetensors"
    save(_model("loopwm", 3), path)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    tensors = {}
    for name, tensor in load_file(str(path)).items():
        head = name.split(".")[0]
        if head in ("reward_head", "cont_head"):
            member, rest = name.removeprefix(f"{head}.members.").split(".", 1)
            if member != "0":
                continue
            name = f"{head}.{rest}"  # member 0's head, as the one shared head
        tensors[name] = tensor
    save_file(tensors, path, metadata=meta)
    with pytest.raises(CheckpointError, match=r"missing \['cont_head.members.0"):
        load(path)


@pytest.mark.parametrize(("stored", "expected"), [(3, 1), (1, 3)])
def test_weights_of_another_ensemble_size_are_refused_not_picked(stored, expected):
    with pytest.raises(CheckpointError, match=f"ensemble of {stored} member.*ensemble={expected}"):
        _model("gru", expected).load_state_dict(_model("gru", stored).state_dict())


def test_dream_penalty_lowers_reward_by_lambda_u_and_limit_truncates(ensemble_checkpoint):
    path, _ = ensemble_checkpoint
    plain = DreamEnv(path)
    penalised = DreamEnv(path, uncertainty_penalty=2.5)
    plain.reset(seed=3)
    penalised.reset(seed=3)
    for action in ([0.5], [-1.0], [0.2]):
        _, r0, *_, info0 = plain.step(np.array(action, np.float32))
        _, r1, *_, info1 = penalised.step(np.array(action, np.float32))
        assert info0["uncertainty"] == info1["uncertainty"] > 0
        assert r1 == pytest.approx(r0 - 2.5 * info0["uncertainty"], abs=1e-9)
        assert info1["uncertainty_truncated"] is False
    limited = DreamEnv(path, uncertainty_limit=1e-9)
    limited.reset(seed=3)
    _, _, terminated, truncated, info = limited.step(np.array([0.5], np.float32))
    assert truncated and info["uncertainty_truncated"] and not terminated


def test_dream_vector_env_truncates_where_members_disagree(ensemble_checkpoint):
    path, _ = ensemble_checkpoint
    probe = DreamVectorEnv(path, 8)
    probe.reset(seed=0)
    *_, infos = probe.step(np.zeros((8, 1), np.float32))
    limit = float(np.median(infos["uncertainty"]))
    env = DreamVectorEnv(path, 8, uncertainty_limit=limit)
    env.reset(seed=0)
    *_, truncated, infos = env.step(np.zeros((8, 1), np.float32))
    np.testing.assert_array_equal(truncated, infos["uncertainty"] > limit)
    np.testing.assert_array_equal(infos["uncertainty_truncated"], truncated)
    assert 0 < truncated.sum() < 8
    *_, infos = env.step(np.zeros((8, 1), np.float32))  # the truncated envs reset
    assert (infos["uncertainty"][truncated] == 0).all()


def test_dream_halt_terminates_where_members_disagree(ensemble_checkpoint):
    path, _ = ensemble_checkpoint
    probe = DreamVectorEnv(path, 8, cont_threshold=0.0)
    probe.reset(seed=0)
    *_, infos = probe.step(np.zeros((8, 1), np.float32))
    halt = float(np.median(infos["uncertainty"]))
    env = DreamVectorEnv(path, 8, cont_threshold=0.0, uncertainty_halt=halt)
    env.reset(seed=0)
    _, _, terminated, truncated, infos = env.step(np.zeros((8, 1), np.float32))
    np.testing.assert_array_equal(terminated, infos["uncertainty"] > halt)
    np.testing.assert_array_equal(infos["uncertainty_halted"], terminated)
    assert 0 < terminated.sum() < 8 and not truncated.any()


def test_random_ensemble_step_follows_one_member_per_sample(ensemble_checkpoint):
    path, _ = ensemble_checkpoint
    env = DreamVectorEnv(path, 64, ensemble_step="random", cont_threshold=0.0)
    obs, _ = env.reset(seed=0)
    model = env.core.model
    start = env.core.encode(obs)
    actions = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
    with torch.no_grad():
        out = model.step(start, torch.as_tensor(actions))
        decoded = model.decode(out.members.flatten(0, 1)).numpy()
        member_obs = env.core.observations.to_env(decoded).reshape(-1, 64, obs.shape[1])
        member_reward = symexp(out.member_reward_symlog)
    nxt, reward, *_ = env.step(actions)
    # each sample's observation and reward are one member's, and not all the same member
    match = np.isclose(member_obs, nxt[None], rtol=1e-5, atol=1e-6).all(-1)  # (K, B)
    assert match.any(0).all()
    chosen = match.argmax(0)
    np.testing.assert_allclose(reward, member_reward.numpy()[chosen, np.arange(64)], rtol=1e-5)
    assert len(set(chosen.tolist())) > 1
    again = DreamVectorEnv(path, 64, ensemble_step="random", cont_threshold=0.0)
    again.reset(seed=0)
    np.testing.assert_array_equal(again.step(actions)[0], nxt)  # seeded by np_random


@pytest.mark.parametrize("chunk", [7, 1024])  # across chunks, and in one
def test_dream_honesty_checks_the_model_along_real_episodes(
    ensemble_checkpoint, chunk, monkeypatch
):
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    from loopwm.agents import honesty as module
    from loopwm.agents.honesty import Transitions, model_honesty

    monkeypatch.setattr(module, "HONESTY_CHUNK", chunk)

    class Push:  # full force to the right: the pole falls within a few dozen steps
        def predict(self, obs, **kwargs):
            return np.full((len(obs), 1), 3.0, np.float32), None

    real = Monitor(gym.make("InvertedPendulum-v5"))
    real.reset(seed=0)
    seen = Transitions()
    _, lengths = evaluate_policy(
        Push(), real, n_eval_episodes=2, callback=seen, return_episode_rewards=True
    )
    assert len(seen.obs) == sum(lengths) and sum(seen.terminated) == 2
    # each episode's last transition reaches the fallen pole, not the next reset state
    last = np.stack(seen.next_obs)[np.array(seen.terminated)]
    assert (np.abs(last[:, 1]) > 0.2).all()
    core = DreamEnv(ensemble_checkpoint[0]).core
    honesty = model_honesty(core.model, core.actions, seen)
    model = core.model
    with torch.no_grad():
        obs = torch.as_tensor(np.stack(seen.obs), dtype=torch.float32)
        nxt = torch.as_tensor(np.stack(seen.next_obs), dtype=torch.float32)
        out = model.step(model.encode(obs), torch.full((len(obs), 1), 3.0))
        error = (model.decode(out.latent, standardized=True) - model.standardize(nxt)).pow(2)
    assert honesty["model_error"] == pytest.approx(float(error.mean()), rel=1e-5)
    assert honesty["terminations"] == 2 and 0 <= honesty["cont_at_terminations"] <= 1
    assert honesty["uncertainty"] == pytest.approx(float(out.uncertainty.mean()), rel=1e-5)
    assert -1 <= honesty["uncertainty_error_spearman"] <= 1
    reach = ((nxt - model.obs_mean) / model.obs_std).abs().amax(0).numpy()
    np.testing.assert_allclose(honesty["reach"], reach, atol=1e-3)
    with pytest.raises(ValueError, match="at least one"):
        model_honesty(model, core.actions, Transitions())


def test_dream_env_with_uncertainty_passes_the_env_checker(ensemble_checkpoint):
    from gymnasium.utils.env_checker import check_env

    env = gym.make("loopwm/Dream-v0", checkpoint=ensemble_checkpoint[0], uncertainty_penalty=1.0)
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"uncertainty_penalty": -1.0}, "uncertainty_penalty must be a finite number >= 0"),
        ({"uncertainty_penalty": float("inf")}, "uncertainty_penalty must be a finite number >= 0"),
        ({"uncertainty_limit": 0.0}, "uncertainty_limit must be a positive number"),
        ({"uncertainty_limit": -2}, "uncertainty_limit must be a positive number"),
        ({"uncertainty_halt": 0.0}, "uncertainty_halt must be a positive number"),
        ({"ensemble_step": "median"}, "ensemble_step must be one of"),
    ],
)
def test_bad_uncertainty_options_are_refused(ensemble_checkpoint, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DreamEnv(ensemble_checkpoint[0], **kwargs)


def test_uncertainty_options_on_a_single_model_are_refused(pendulum_checkpoint):
    for kwargs in (
        {"uncertainty_penalty": 1.0},
        {"uncertainty_limit": 0.5},
        {"uncertainty_halt": 0.5},
        {"ensemble_step": "random"},
    ):
        name = next(iter(kwargs)).replace("ensemble_step", "ensemble_step='random'")
        with pytest.raises(ConfigError, match=f"^{name} needs an ensemble world model"):
            DreamEnv(pendulum_checkpoint, **kwargs)
    with pytest.raises(ConfigError, match="^uncertainty_penalty and uncertainty_halt need an"):
        DreamEnv(pendulum_checkpoint, uncertainty_penalty=1.0, uncertainty_halt=0.5)


def test_bad_ensemble_sizes_are_refused():
    with pytest.raises(ConfigError, match="ensemble"):
        model_config("loopwm", "tiny", obs_dim=5, action_dim=2, overrides={"ensemble": 0})
    env = gym.make("InvertedPendulum-v5")
    with pytest.raises(ConfigError, match="uncertainty_penalty needs an ensemble"):
        DreamerAgent(env.observation_space, env.action_space, DreamerConfig(uncertainty_penalty=1))
    with pytest.raises(ConfigError, match="uncertainty_penalty must be >= 0"):
        DreamerConfig(uncertainty_penalty=-1.0)
    with pytest.raises(ValueError, match="ensemble >= 2"):
        DynaConfig(uncertainty_limit=0.5)
    with pytest.raises(ValueError, match="uncertainty_halt and ensemble_step='random' need"):
        DynaConfig(uncertainty_halt=0.5, ensemble_step="random")
    with pytest.raises(ValueError, match="ensemble_step"):
        DynaConfig(ensemble=2, ensemble_step="median")
    with pytest.raises(ValueError, match="uncertainty_penalty must be a finite number >= 0"):
        DynaConfig(ensemble=2, uncertainty_penalty=-1.0)


def test_agent_imagines_with_the_penalty(pendulum_data):
    env = gym.make("InvertedPendulum-v5")
    config = DreamerConfig(
        preset="tiny",
        horizon=4,
        imagine_batch=16,
        hidden_dim=32,
        uncertainty_penalty=3.0,
        model_overrides={"ensemble": 2},
    )
    agent = DreamerAgent(env.observation_space, env.action_space, config, seed=0)
    start = agent.world_model.encode(torch.as_tensor(pendulum_data.obs[:16]).float())
    with torch.no_grad():
        torch.manual_seed(0)
        imagined = agent.imagine(start, 4, grad=False)
        rollout = agent.world_model.imagine(start, agent.to_env(imagined.action))
    torch.testing.assert_close(imagined.reward, rollout.reward - 3.0 * rollout.uncertainty)


def test_spearman_ranks_with_ties():
    assert spearman(np.arange(10), np.arange(10) ** 3) == pytest.approx(1.0)
    assert spearman(np.arange(10), -np.arange(10)) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(
        np.corrcoef([0.5] * 2 + [2.5] * 2, [0, 1, 2, 3])[0, 1]
    )
    assert np.isnan(spearman(np.ones(5), np.arange(5)))


def _dyna_run(steps: int, **options):
    from stable_baselines3 import SAC

    from loopwm.agents.dyna import DynaCallback
    from tests.test_dyna import TINY

    config = dataclasses.replace(TINY, ensemble=2, **options)
    env = gym.make("InvertedPendulum-v5")
    agent = SAC("MlpPolicy", env, seed=0, learning_starts=50, batch_size=32, device="cpu")
    callback = DynaCallback(config, seed=0)
    agent.learn(steps, callback=callback)
    buffer = agent.replay_buffer
    # SB3 stores a step's real transition after the callback ran: the last refit's
    # imagined transitions sit between the first steps - 1 real ones and the last one
    return callback, buffer.rewards[steps - 1 : buffer.size() - 1, 0]


def test_dyna_penalises_and_stops_rollouts_where_members_disagree():
    plain, plain_rewards = _dyna_run(100)
    penalised, penalised_rewards = _dyna_run(100, uncertainty_penalty=5.0)
    assert plain.imagined == penalised.imagined > 0
    assert (penalised_rewards < plain_rewards).all()  # the same rollouts, each reward lowered
    stopped, _ = _dyna_run(100, uncertainty_limit=1e-9)
    assert stopped.imagined == 0  # no imagined step is trusted


def test_dyna_halts_rollouts_and_follows_random_members():
    plain, plain_rewards = _dyna_run(100)
    halted, halted_rewards = _dyna_run(100, uncertainty_halt=1e-9)
    # every rollout terminates at its first step, which is kept and marked done
    assert halted.imagined == halted.config.rollouts < plain.imagined
    dones = halted.model.replay_buffer.dones[99 : 99 + halted.imagined, 0]
    assert (dones == 1).all()
    assert np.isin(halted_rewards, plain_rewards).all()  # the same first steps as plain's
    random, random_rewards = _dyna_run(100, ensemble_step="random")
    assert random.imagined > 0 and np.isfinite(random_rewards).all()
    assert not np.isin(random_rewards, plain_rewards).any()  # one member's, not the mean's


def test_command_line_fits_an_ensemble_and_trains_in_its_penalised_dream(
    pendulum_dir, tmp_path, capsys
):
    from loopwm.cli import main

    fit_out, dream_out = tmp_path / "fit", tmp_path / "dream"
    command = (
        f"fit --data {pendulum_dir} --preset tiny --wm.ensemble 2 --steps 20 --batch-size 16 "
        f"--eval-every 0 --out {fit_out} --quiet --no-tensorboard"
    )
    assert main(command.split()) == 0
    assert "ensemble disagreement u: mean" in capsys.readouterr().out
    command = (
        f"dream --checkpoint {fit_out}/model.safetensors --algo ppo --steps 64 "
        f"--eval-episodes 1 --uncertainty-penalty 2 --out {dream_out} --quiet"
    )
    assert main(command.split()) == 0
    printed = capsys.readouterr().out
    assert "in whole episodes, the plain dream" in printed
    assert "disagreement u there" in printed  # the ensemble's honesty line
    result = json.loads((dream_out / "dream.json").read_text())
    assert result["uncertainty_penalty"] == 2.0
    assert result["dream_return"][0] < result["dream_return_raw"][0]
