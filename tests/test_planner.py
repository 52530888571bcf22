"""The planner's score against a hand computation, and planning against the actor."""

import numpy as np
import torch

from loopwm.agents import PlannerConfig
from loopwm.agents.planner import LatentPlanner
from loopwm.world_model import Rollout


class LineModel:
    """A known world model: the latent is a position, ``x' = x + 0.25 a``, reward
    ``-|x'|``, continuation ``cont`` everywhere. Only what the planner calls."""

    def __init__(self, cont: float = 1.0) -> None:
        self.cont_value = cont

        class Config:
            action_dim = 1

        self.config = Config()

    def imagine(self, latent, actions=None, *, policy=None, horizon=None):
        steps = actions.shape[1] if actions is not None else horizon
        latents, taken = [], []
        for t in range(steps):
            action = actions[:, t] if actions is not None else policy(latent)
            latent = latent + 0.25 * action
            latents.append(latent)
            taken.append(action)
        latent_seq = torch.stack(latents, 1)  # (B, T, 1)
        reward = -latent_seq[..., 0].abs()
        return Rollout(
            latent=latent_seq,
            action=torch.stack(taken, 1),
            reward=reward,
            cont=torch.full_like(reward, self.cont_value),
            iters=torch.ones_like(reward, dtype=torch.long),
            residual=torch.zeros_like(reward),
        )


def planner(model, policy, value=None, **config) -> LatentPlanner:
    return LatentPlanner(
        PlannerConfig(kind="mppi", **config),
        model,
        policy=policy,
        value=value or (lambda h: torch.full((h.shape[0],), 10.0)),
        to_env=lambda a: a,
        gamma=0.9,
    )


def test_score_matches_a_hand_computation():
    model = LineModel(cont=0.5)
    plan = planner(model, policy=lambda h: torch.zeros_like(h), horizon=2)
    start = torch.tensor([[1.0]])
    actions = torch.tensor([[[-1.0], [1.0]], [[0.0], [0.0]]])  # (M=2, H=2, A=1)
    score = plan.score(start, actions)
    # sequence 0: x = 0.75 then 1.0; rewards -0.75, -1.0; discounts 1, 0.9*0.5
    # terminal: (0.9*0.5)^2 * V = 0.2025 * 10
    first = -0.75 + 0.45 * -1.0 + 0.2025 * 10.0
    second = -1.0 + 0.45 * -1.0 + 0.2025 * 10.0
    assert torch.allclose(score, torch.tensor([first, second]))


def test_planning_beats_the_actor_on_a_toy_task():
    """From x = 0.9 the best move is to the origin; an actor that always pushes right
    drifts away, and the planner seeded with it must still find the way back."""
    model = LineModel()
    actor = lambda h: torch.ones(h.shape[0], 1)  # noqa: E731
    plan = planner(
        model, policy=actor, value=lambda h: torch.zeros(h.shape[0]), horizon=4, samples=64
    )
    generator = torch.Generator().manual_seed(0)

    def run(choose) -> float:
        x, total = torch.tensor([[0.9]]), 0.0
        for _ in range(8):
            x = x + 0.25 * choose(x).reshape(1, 1)
            total += -float(x.abs())
        return total

    planned = run(lambda x: plan.plan(x, explore=False, generator=generator))
    acted = run(actor)
    assert planned > acted + 2.0
    assert np.isclose(acted, -sum(min(0.9 + 0.25 * k, 10) for k in range(1, 9)))
