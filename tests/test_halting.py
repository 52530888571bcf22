"""Certified per-sample halting: correct, frozen once stopped, and controllable per call."""

import torch

from loopwm import LoopWM, LoopWMConfig
from loopwm.solver import certified_stop, solve


def double_model(**overrides):
    torch.manual_seed(3)
    cfg = LoopWMConfig.preset("tiny", obs_dim=5, action_dim=2, **overrides)
    return LoopWM(cfg).double().eval()


def with_warm_start(model, start):
    """The same weights, started from ``start``."""
    variant = LoopWM(model.config.replace(warm_start=start)).double().eval()
    variant.load_state_dict(model.state_dict())
    return variant


def transition_inputs(model, batch=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Warm starts at very different distances from their fixed points.
    scale = torch.logspace(-3, 1, batch, dtype=torch.float64)[:, None]
    h = torch.randn(batch, model.config.latent_dim, generator=g, dtype=torch.float64) * scale
    a = torch.rand(batch, model.config.action_dim, generator=g, dtype=torch.float64) * 2 - 1
    return h, a


def reference_fixed_point(model, h, a):
    w = model.block.weights()
    projected = model.block.project(model.prelude(torch.cat([h, a], -1)), w)
    return solve(
        lambda x, p: model.block.iterate(w, x, p), h, projected, max_iters=500, stop=None
    ).latent


@torch.no_grad()
def test_halted_latent_is_within_certified_distance_of_fixed_point():
    model = double_model(c_max=0.95, a_max=0.6)
    h, a = transition_inputs(model)
    star = reference_fixed_point(model, h, a)
    for tol in (1e-1, 1e-3, 1e-6):
        out = model.step(h, a, tol=tol, max_iters=500)
        assert (out.iters < 500).all()  # all converged before the cap
        c = model.contraction_bound()
        certified = c / (1 - c) * out.residual
        assert (certified <= tol).all()
        distance = (out.latent - star).norm(dim=-1)
        assert (distance <= certified + 1e-12).all()
        assert (distance <= tol + 1e-12).all()


@torch.no_grad()
def test_warm_starts_far_from_the_fixed_point_take_more_iterations():
    """Iterations grow with how far the state moves (the adaptivity claim)."""
    model = double_model()
    h, a = transition_inputs(model)
    w = model.block.weights()
    projected = model.block.project(model.prelude(torch.cat([h, a], -1)), w)
    star = reference_fixed_point(model, h, a)

    def iters_from(start):
        stop = certified_stop(w.contraction, 1e-4)
        return solve(
            lambda x, p: model.block.iterate(w, x, p), start, projected, max_iters=200, stop=stop
        ).iters.float()

    near = iters_from(star + 1e-3 * torch.randn_like(star))
    far = iters_from(star + 10.0 * torch.randn_like(star))
    assert far.mean() > near.mean() + 3
    # and through the public step: iteration counts rise with the size of the state change
    out = model.step(h, a, tol=1e-4)
    change = (out.latent - h).norm(dim=-1)
    ranks = lambda v: v.argsort().argsort().double()  # noqa: E731
    rho = torch.corrcoef(torch.stack([ranks(change), ranks(out.iters.double())]))[0, 1]
    assert rho > 0.6


@torch.no_grad()
def test_max_iters_and_tol_are_respected():
    model = double_model()
    h, a = transition_inputs(model)
    capped = model.step(h, a, tol=0.0, max_iters=3)
    assert (capped.iters == 3).all()
    loose = model.step(h, a, tol=1e3, max_iters=50)
    assert (loose.iters == 1).all()
    tight = model.step(h, a, tol=1e-9, max_iters=200)
    assert (
        tight.iters.float().mean() > model.step(h, a, tol=1e-2, max_iters=200).iters.float().mean()
    )
    default = model.step(h, a)
    assert (default.iters <= model.config.max_iters).all()


@torch.no_grad()
def test_stopped_samples_stay_frozen():
    """Each sample's result equals running exactly its own iteration count alone."""
    model = double_model()
    h, a = transition_inputs(model)
    w = model.block.weights()
    projected = model.block.project(model.prelude(torch.cat([h, a], -1)), w)

    def f(x, p):
        return model.block.iterate(w, x, p)

    start = h.clone()
    sol = solve(f, h, projected, max_iters=40, stop=certified_stop(w.contraction, 1e-4))
    assert torch.equal(h, start)  # the warm start is read, never written
    assert sol.iters.unique().numel() > 1  # samples really halted at different iterations
    stepped = torch.linalg.vector_norm(sol.latent - sol.previous, dim=-1)
    torch.testing.assert_close(sol.residual, stepped, rtol=0, atol=1e-12)  # each row's last step
    for i in range(h.shape[0]):
        k = int(sol.iters[i])
        alone = solve(f, h[i : i + 1], projected[i : i + 1], max_iters=k, stop=None)
        torch.testing.assert_close(sol.latent[i], alone.latent[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(sol.previous[i], alone.previous[0], rtol=0, atol=1e-12)


def test_fixed_halting_runs_exactly_max_iters():
    model = double_model(halting="fixed", max_iters=5)
    h, a = transition_inputs(model)
    with torch.no_grad():
        assert (model.step(h, a).iters == 5).all()


def test_grad_enabled_inference_matches_no_grad():
    """The phantom-gradient step used when autograd is on reproduces the solved latent."""
    model = double_model()
    h, a = transition_inputs(model)
    with torch.no_grad():
        ref = model.step(h, a)
    out = model.step(h, a)
    assert out.latent.requires_grad
    torch.testing.assert_close(out.latent.detach(), ref.latent, rtol=0, atol=1e-10)
    assert torch.equal(out.iters, ref.iters)


@torch.no_grad()
def test_linear_warm_start_reaches_the_same_certified_fixed_point():
    model = double_model(c_max=0.95, a_max=0.6)
    linear = with_warm_start(model, "linear")
    h, a = transition_inputs(model)
    star = reference_fixed_point(model, h, a)
    tol = 1e-6
    out = linear.step(h, a, tol=tol, max_iters=500)
    assert (out.iters < 500).all()
    # the start changes the iterations, never the fixed point: the bound still holds
    assert (torch.linalg.vector_norm(out.latent - star, dim=-1) <= tol * (1 + 1e-6)).all()
    assert not torch.equal(out.iters, model.step(h, a, tol=tol, max_iters=500).iters)


@torch.no_grad()
def test_linear_warm_start_is_exact_for_a_block_without_its_nonlinear_part():
    model = double_model(warm_start="linear")
    model.block.out.weight.zero_()  # R(x, u) = 0: the linear fixed point is the fixed point
    h, a = transition_inputs(model)
    out = model.step(h, a, tol=1e-9, max_iters=50)
    assert (out.iters == 1).all()
    assert torch.allclose(out.residual, torch.zeros_like(out.residual), atol=1e-12)
    # and it is a fixed point of the full block (not just of the start rule)
    star = reference_fixed_point(model, h, a)
    assert torch.allclose(out.latent, star, atol=1e-9)


@torch.no_grad()
def test_linear_warm_start_of_an_ensemble_starts_each_member_at_its_own_linear_point():
    model = double_model(warm_start="linear", ensemble=3)
    plain = with_warm_start(model, "latent")
    h, a = transition_inputs(model, batch=8)
    out, ref = model.step(h, a, tol=1e-9, max_iters=300), plain.step(h, a, tol=1e-9, max_iters=300)
    assert out.members.shape == (3, 8, model.config.latent_dim)
    # each member reaches its own fixed point, whatever the start
    torch.testing.assert_close(out.members, ref.members, rtol=0, atol=1e-8)


@torch.no_grad()
def test_extrapolated_warm_start_starts_at_two_h_minus_previous_and_reaches_the_fixed_point():
    model = double_model(c_max=0.95, a_max=0.6)
    extrapolate = with_warm_start(model, "extrapolate")
    h, a = transition_inputs(model)
    previous = h + 0.1 * torch.randn_like(h)
    tol = 1e-6
    out = extrapolate.step(h, a, previous=previous, tol=tol, max_iters=500)
    star = reference_fixed_point(model, h, a)
    assert (torch.linalg.vector_norm(out.latent - star, dim=-1) <= tol * (1 + 1e-6)).all()
    # the iterations are those of the loop started at 2 h - previous
    w = model.block.weights()
    projected = model.block.project(model.prelude(torch.cat([h, a], -1)), w)
    ref = solve(
        lambda x, p: model.block.iterate(w, x, p),
        2 * h - previous,
        projected,
        max_iters=500,
        stop=certified_stop(w.contraction, tol),
    )
    assert torch.equal(out.iters, ref.iters)
    # without a previous latent (or with previous == h) it is the latent start
    plain = model.step(h, a, tol=tol, max_iters=500)
    assert torch.equal(extrapolate.step(h, a, tol=tol, max_iters=500).iters, plain.iters)
    assert torch.equal(
        extrapolate.step(h, a, previous=h, tol=tol, max_iters=500).iters, plain.iters
    )
    # the latent start never reads previous
    assert torch.equal(
        model.step(h, a, previous=previous, tol=tol, max_iters=500).iters, plain.iters
    )


@torch.no_grad()
def test_an_extrapolating_rollout_starts_each_step_from_the_last_two_latents():
    model = double_model(warm_start="extrapolate", ensemble=2)
    h, _ = transition_inputs(model, batch=6)
    actions = torch.rand(6, 3, model.config.action_dim, dtype=torch.float64) * 2 - 1
    rollout = model.imagine(h, actions, tol=1e-6)
    latents = [h, *rollout.latent.unbind(1)]
    unmoved = model.step(latents[1], actions[:, 1], tol=1e-6)  # as if from the latent
    assert not torch.equal(unmoved.iters, rollout.iters[:, 1])
    for t in range(3):
        previous = latents[t - 1] if t else None
        step = model.step(latents[t], actions[:, t], previous=previous, tol=1e-6)
        assert torch.equal(step.iters, rollout.iters[:, t])
        torch.testing.assert_close(step.latent, rollout.latent[:, t], rtol=0, atol=1e-12)
