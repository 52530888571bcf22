"""Every world model shares one interface; gradients reach every part of LoopWM."""

import numpy as np
import pytest
import torch

from loopwm import MODEL_NAMES, LoopWMConfig, build_model
from loopwm.config import FitConfig
from loopwm.training import world_model_loss

from .conftest import random_batch


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_interface_shapes(name, tiny_config):
    torch.manual_seed(0)
    model = build_model(name, tiny_config).eval()
    h = model.encode(torch.randn(3, 5))
    assert h.shape == (3, tiny_config.latent_dim)
    out = model.step(h, torch.zeros(3, 2))
    assert out.latent.shape == h.shape
    for field in ("reward", "cont", "iters", "residual"):
        assert getattr(out, field).shape == (3,)
    assert out.iters.dtype == torch.long and (out.iters >= 1).all()
    assert ((out.cont > 0) & (out.cont < 1)).all()
    assert model.decode(out.latent).shape == (3, 5)
    assert model.reward(out.latent).shape == (3,)


@pytest.mark.parametrize("grad_mode", ["truncated", "phantom"])
def test_gradients_reach_encoder_prelude_block_and_heads(grad_mode, tiny_config):
    torch.manual_seed(0)
    model = build_model("loopwm", tiny_config.replace(grad_mode=grad_mode)).train()
    loss, metrics = world_model_loss(model, random_batch(tiny_config), FitConfig(horizon=3))
    loss.backward()
    for part in ("encoder", "prelude", "block", "decoder", "reward_head", "cont_head"):
        grads = [p.grad for p in getattr(model, part).parameters()]
        assert all(g is not None for g in grads), part
        assert sum(float(g.abs().sum()) for g in grads) > 0, part
    # every parameter of the shared block, including the diagonal A and injection B
    for name, p in model.block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert metrics["loop/iters_mean"] >= 1


@pytest.mark.parametrize("name", ["mlp", "gru", "loopwm-gate", "loopwm-fixed"])
def test_baselines_train(name, tiny_config):
    torch.manual_seed(0)
    model = build_model(name, tiny_config).train()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss, metrics = world_model_loss(model, random_batch(tiny_config), FitConfig(horizon=3))
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert changed == len(before)  # every parameter (gate included) received an update
    if name == "loopwm-gate":
        assert metrics["loop/aux_loss"] > 0


def test_training_iteration_counts_are_sampled_per_batch(tiny_config):
    torch.manual_seed(0)
    cfg = tiny_config.replace(train_iters_mean=6.0, grad_mode="truncated")
    model = build_model("loopwm", cfg).train()
    counts = []
    for _ in range(40):
        h = torch.randn(4, tiny_config.latent_dim)
        out = model.step(h, torch.zeros(4, 2))
        assert out.iters.unique().numel() == 1  # one count per batch
        counts.append(int(out.iters[0]))
    assert len(set(counts)) > 3
    assert 4.0 < np.mean(counts) < 8.0


@pytest.mark.parametrize("grad_mode", ["truncated", "phantom"])
def test_fixed_model_trains_with_exactly_max_iters(grad_mode, tiny_config):
    cfg = tiny_config.replace(max_iters=5, grad_mode=grad_mode)
    model = build_model("loopwm-fixed", cfg).train()
    out = model.step(torch.randn(4, tiny_config.latent_dim), torch.zeros(4, 2))
    assert (out.iters == 5).all()


def test_same_seed_same_result(tiny_config, tmp_path):
    def run():
        torch.manual_seed(7)
        model = build_model("loopwm", tiny_config).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for i in range(3):
            loss, _ = world_model_loss(
                model, random_batch(tiny_config, seed=i), FitConfig(horizon=3)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(run(), run(), strict=True):
        assert torch.equal(a, b)


def test_contraction_bound_only_for_looped_models(tiny_config):
    with pytest.raises(TypeError, match="no loop"):
        build_model("gru", tiny_config).contraction_bound()
    gate = build_model("loopwm-gate", tiny_config)
    # Uncertified: the bound is the same formula over its unconstrained weights, exactly.
    block = gate.block
    decay = torch.exp(-torch.nn.functional.softplus(block.decay_logit.detach().double())).max()
    norms = [torch.linalg.matrix_norm(w.detach().double(), ord=2) for w in block.x_matrices()]
    assert gate.contraction_bound() == pytest.approx(float(decay + torch.stack(norms).prod()))


def test_gated_halting_stops_where_the_gate_says(tiny_config):
    torch.manual_seed(0)
    model = build_model("loopwm-gate", tiny_config).eval()
    h = model.encode(torch.randn(6, 5))
    action = torch.zeros(6, 2)
    with torch.no_grad():
        model.gate.weight.zero_()
        model.gate.bias.fill_(10.0)  # probability ~1: halt after the first iteration
        assert (model.step(h, action).iters == 1).all()
        model.gate.bias.fill_(-10.0)  # probability ~0: never halts, runs the cap
        assert (model.step(h, action, max_iters=7).iters == 7).all()


def test_weight_cache_is_invalidated_by_an_optimizer_step(tiny_config):
    torch.manual_seed(0)
    model = build_model("loopwm", tiny_config).eval()
    with torch.no_grad():
        cached = model.block.weights()
        assert model.block.weights() is cached  # computed once while nothing changes
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, _ = world_model_loss(model.train(), random_batch(tiny_config), FitConfig(horizon=3))
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        fresh = model.block.weights()
    assert fresh is not cached
    assert not torch.equal(fresh.x_weight, cached.x_weight)
    # and the same holds after a rollout that pinned weights carrying a graph
    with model.reuse_weights():
        model.step(model.encode(torch.zeros(2, 5)), torch.zeros(2, 2))
    with torch.no_grad():
        assert not model.block.weights().x_weight.requires_grad


def test_unknown_model_name(tiny_config):
    with pytest.raises(ValueError, match="unknown model"):
        build_model("transformer", tiny_config)


def test_config_validation():
    with pytest.raises(ValueError, match="a_max < c_max < 1"):
        LoopWMConfig(obs_dim=3, action_dim=1, c_max=1.0)
    with pytest.raises(ValueError, match="activation"):
        LoopWMConfig(obs_dim=3, action_dim=1, activation="silu")  # not 1-Lipschitz
    with pytest.raises(ValueError, match="warm_start"):
        LoopWMConfig(obs_dim=3, action_dim=1, warm_start="zero")
    with pytest.raises(ValueError, match="obs_dim"):
        LoopWMConfig(obs_dim=0, action_dim=1)
    with pytest.raises(ValueError, match="unknown LoopWMConfig fields"):
        LoopWMConfig.from_dict({"obs_dim": 3, "action_dim": 1, "latnet_dim": 4})
    with pytest.raises(ValueError, match="unknown preset"):
        LoopWMConfig.preset("huge", obs_dim=3, action_dim=1)
    cfg = LoopWMConfig.preset("tiny", obs_dim=3, action_dim=1)
    with pytest.raises(AttributeError):
        cfg.latent_dim = 3  # frozen
    assert LoopWMConfig.from_dict(cfg.to_dict()) == cfg


def test_terminal_weight_scales_the_continuation_loss_of_terminal_steps_only(tiny_config):
    torch.manual_seed(0)
    model = build_model("loopwm", tiny_config).eval()
    batch = random_batch(tiny_config)
    assert batch["terminated"].sum() > 0

    def losses(weight: float, batch: dict) -> dict:
        with torch.no_grad():
            return world_model_loss(model, batch, FitConfig(horizon=3, terminal_weight=weight))[1]

    one, three, five = (losses(w, batch) for w in (1.0, 3.0, 5.0))
    # the continuation loss is linear in the weight of its terminal part
    assert three["wm/cont_loss"] > one["wm/cont_loss"]
    np.testing.assert_allclose(
        five["wm/cont_loss"] - one["wm/cont_loss"],
        2 * (three["wm/cont_loss"] - one["wm/cont_loss"]),
        rtol=1e-4,
    )
    for term in ("obs", "reward", "consistency"):
        assert three[f"wm/{term}_loss"] == one[f"wm/{term}_loss"]
    no_ends = {**batch, "terminated": torch.zeros_like(batch["terminated"])}
    assert losses(5.0, no_ends)["wm/cont_loss"] == losses(1.0, no_ends)["wm/cont_loss"]
    with pytest.raises(ValueError, match="terminal_weight"):
        FitConfig(terminal_weight=0.0)


def test_obs_weight_zero_trains_decoder_free_and_other_terms_keep_their_weight(tiny_config):
    torch.manual_seed(0)
    model = build_model("loopwm", tiny_config).train()
    batch = random_batch(tiny_config)
    full, full_metrics = world_model_loss(model, batch, FitConfig(horizon=3))
    free_config = FitConfig(horizon=3, loss_weights={"obs": 0})
    assert free_config.loss_weights == {"obs": 0, "reward": 1.0, "cont": 1.0, "consistency": 1.0}
    free, free_metrics = world_model_loss(model, batch, free_config)
    # the reconstruction and next-observation terms are gone, the rest is unchanged
    assert "wm/obs_loss" not in free_metrics and free_metrics["wm/recon_loss"] == 0.0
    dropped = full_metrics["wm/recon_loss"] + full_metrics["wm/obs_loss"]
    np.testing.assert_allclose(float(free.detach()), float(full.detach()) - dropped, rtol=1e-5)
    free.backward()
    assert all(p.grad is None for p in model.decoder.parameters())  # never run
    assert all(p.grad is not None for p in model.encoder.parameters())
    for bad in ({"obs": -1.0}, {"reward": "1"}, {"pixels": 1.0}):
        with pytest.raises(ValueError, match="loss_weights"):
            FitConfig(loss_weights=bad)


def test_obs_symlog_squashes_standardised_observations_and_decode_inverts_it(tiny_config):
    model = build_model("loopwm", tiny_config.replace(obs_symlog=True))
    dim = tiny_config.obs_dim
    mean, std = np.linspace(-2.0, 2.0, dim), np.linspace(0.1, 2.0, dim)
    model.set_obs_normalizer(mean, std)
    far = torch.tensor(mean + 30.0 * std, dtype=torch.float32)[None]  # 30 stds out
    torch.testing.assert_close(model.standardize(far), torch.full((1, dim), float(np.log(31.0))))
    plain = build_model("loopwm", tiny_config)
    plain.set_obs_normalizer(mean, std)
    torch.testing.assert_close(plain.standardize(far), torch.full((1, dim), 30.0))
    latent = model.encode(torch.randn(4, dim))
    raw = model.decode(latent)  # back in raw units: symexp, then the affine map
    torch.testing.assert_close(model.standardize(raw), model.decode(latent, standardized=True))
