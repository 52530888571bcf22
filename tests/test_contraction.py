"""The loop is a certified contraction: the bound is real, < 1, and survives training."""

import pytest
import torch

from loopwm import LoopWM, LoopWMConfig
from loopwm.config import FitConfig
from loopwm.networks import tanh
from loopwm.solver import solve
from loopwm.training import world_model_loss

from .conftest import random_batch


def train_steps(model, steps=20, lr=5e-2, seed=0):
    """A few aggressive optimiser steps, to move parameters far from initialisation."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    cfg = FitConfig(horizon=3)
    model.train()
    for i in range(steps):
        loss, _ = world_model_loss(model, random_batch(model.config, seed=seed + i), cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def scramble(model, scale=30.0, seed=0):
    """Random, large raw parameters: the parametrisation must still certify c <= c_max."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.block.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model


def iteration_and_input(model, batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, model.config.latent_dim, generator=g, dtype=torch.float64) * 3
    a = torch.rand(batch, model.config.action_dim, generator=g, dtype=torch.float64)
    w = model.block.weights()
    projected = model.block.project(model.prelude(torch.cat([h, a], -1)), w)

    def f(x, p=projected):
        return model.block.iterate(w, x, p)

    return f, h, projected


# every (c_max, a_max) the regime map sweeps (benchmarks/regimes.py contraction)
SWEPT = ["0.5/0.25", "0.9/0.45", "0.97/0.485", "0.99/0.495", "0.9/0.1", "0.9/0.8"]


@pytest.mark.parametrize(
    "setup",
    ["init", "trained", "scrambled", "deep_relu", *(f"swept {s}" for s in SWEPT)],
)
def test_jacobian_and_difference_ratios_never_exceed_bound(setup):
    torch.manual_seed(1)
    cfg = LoopWMConfig.preset("tiny", obs_dim=5, action_dim=2)
    if setup == "deep_relu":
        cfg = cfg.replace(block_layers=3, activation="relu", c_max=0.97, a_max=0.3)
    if setup.startswith("swept"):
        c_max, a_max = map(float, setup.split()[1].split("/"))
        cfg = cfg.replace(c_max=c_max, a_max=a_max)
    model = LoopWM(cfg)
    if setup == "trained":
        train_steps(model)
    if setup in ("scrambled", "deep_relu") or setup.startswith("swept"):
        scramble(model)
    model = model.double().eval()
    bound = model.contraction_bound()
    assert 0 < bound <= cfg.c_max < 1

    with torch.no_grad():
        f, h, projected = iteration_and_input(model)
    for i in range(h.shape[0]):
        x = h[i : i + 1].clone()
        for _ in range(3):  # at a few points along the trajectory
            jac = torch.autograd.functional.jacobian(
                lambda z, i=i: f(z, projected[i : i + 1]), x
            ).reshape(cfg.latent_dim, cfg.latent_dim)
            # power iteration on J^T J, as an empirical estimate independent of the bound
            v = torch.randn(cfg.latent_dim, dtype=torch.float64)
            for _ in range(200):
                v = jac.T @ (jac @ v)
                v = v / v.norm()
            power_estimate = (jac @ v).norm().item()
            exact = torch.linalg.matrix_norm(jac, ord=2).item()
            assert power_estimate <= bound + 1e-9
            assert exact <= bound + 1e-9
            with torch.no_grad():
                x = f(x, projected[i : i + 1])

    with torch.no_grad():
        x_prev, x = h, f(h, projected)
        for _ in range(30):
            x_next = f(x, projected)
            num = (x_next - x).norm(dim=-1)
            den = (x - x_prev).norm(dim=-1)
            ok = den > 1e-12
            assert (num[ok] <= bound * den[ok] * (1 + 1e-9) + 1e-12).all()
            x_prev, x = x, x_next


def test_bound_is_exact_not_loose():
    """The certificate is max(A) + prod of exact spectral norms of the clipped matrices."""
    model = LoopWM(LoopWMConfig.preset("tiny", obs_dim=5, action_dim=2)).double()
    w = model.block.weights()
    expected = (
        w.decay.max().item()
        + (
            torch.linalg.matrix_norm(w.x_weight, 2) * torch.linalg.matrix_norm(w.out_weight, 2)
        ).item()
    )
    assert model.contraction_bound() == pytest.approx(expected, rel=1e-12)


def test_training_keeps_bound_below_c_max():
    torch.manual_seed(0)
    model = LoopWM(LoopWMConfig.preset("tiny", obs_dim=5, action_dim=2, c_max=0.8, a_max=0.4))
    train_steps(model, steps=30, lr=0.1)
    assert model.contraction_bound() <= 0.8


def test_unique_fixed_point_from_any_warm_start(tiny_model):
    model = tiny_model.double().eval()
    with torch.no_grad():
        f, h, projected = iteration_and_input(model)
        a = solve(f, h, projected, max_iters=400, stop=None).latent
        b = solve(f, -5 * h + 7, projected, max_iters=400, stop=None).latent
    assert torch.allclose(a, b, atol=1e-10)


def test_solver_tanh_is_torch_tanh_to_rounding():
    """The loop's tanh (2 sigmoid(2x) - 1 where no gradient is recorded) is tanh: as
    bounded, 1-Lipschitz to rounding, its input untouched, and torch's own with autograd."""
    x = torch.linspace(-20.0, 20.0, 4001)
    original = x.clone()
    with torch.no_grad():
        fast = tanh(x)
        fast64 = tanh(x.double())
    assert torch.equal(x, original)
    assert (fast - torch.tanh(x)).abs().max() <= 2.5e-7
    assert (fast64 - torch.tanh(x.double())).abs().max() <= 1e-15
    assert fast.abs().max() <= 1.0
    steps = (fast[1:] - fast[:-1]).abs() / (x[1:] - x[:-1])
    assert steps.max() <= 1.0 + 1e-4
    tracked = x.clone().requires_grad_()
    tanh(tracked).sum().backward()
    torch.testing.assert_close(tracked.grad, 1 - torch.tanh(x) ** 2)
