"""Imagined rollouts of any length stay bounded: 10,000 steps inside the proven bound."""

import torch

from loopwm import LoopWM, LoopWMConfig


@torch.no_grad()
def test_10000_step_rollout_stays_inside_latent_bound():
    torch.manual_seed(0)
    model = LoopWM(LoopWMConfig.preset("tiny", obs_dim=5, action_dim=2, c_max=0.95))
    # Large raw parameters: the worst case the parametrisation must still tame.
    with torch.no_grad():
        for p in model.block.parameters():
            p.mul_(20.0)
    model.eval()
    g = torch.Generator().manual_seed(0)
    latent = model.encode(torch.randn(16, 5, generator=g) * 10)
    bound = model.latent_bound(start_norm=float(latent.norm(dim=-1).max()))
    assert bound < float("inf")
    max_norm = 0.0
    for _ in range(10_000):
        action = torch.rand(16, 2, generator=g) * 2 - 1
        out = model.step(latent, action)
        latent = out.latent
        max_norm = max(max_norm, float(latent.norm(dim=-1).max()))
    assert torch.isfinite(latent).all()
    assert max_norm <= bound
    assert max_norm > 0.05 * bound  # the bound is not vacuous here


@torch.no_grad()
def test_imagine_matches_repeated_steps(tiny_model):
    model = tiny_model.eval()
    h = model.encode(torch.randn(4, 5))
    actions = torch.rand(4, 6, 2)
    rollout = model.imagine(h, actions)
    assert rollout.latent.shape == (4, 6, 16) and rollout.iters.shape == (4, 6)
    for t in range(6):
        out = model.step(h, actions[:, t])
        torch.testing.assert_close(rollout.latent[:, t], out.latent)
        torch.testing.assert_close(rollout.reward[:, t], out.reward)
        h = out.latent
