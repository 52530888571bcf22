"""A Dreamer-style agent: a looped world model, and an actor-critic that learns in it.

The world model learns from replayed real windows (:func:`loopwm.losses.world_model_loss`).
The actor and critic learn only from imagined rollouts: replayed real observations are
encoded, the actor's actions are imagined ``horizon`` steps ahead in the world model, and
lambda-returns bootstrapped by a slow (EMA) critic are the targets (DreamerV3's recipe:
percentile return normalisation, entropy bonus, slow-critic regulariser). The actor's
gradient runs back through the imagined transitions (``actor_grad="dynamics"``; through
LoopWM's fixed point by its phantom gradient) or is a score-function gradient
(``"reinforce"``). At action selection the agent acts with the actor or plans with
:class:`~loopwm.agents.planner.LatentPlanner` (MPPI/CEM, critic as terminal value).

>>> import gymnasium as gym                                                # doctest: +SKIP
>>> env = gym.make("InvertedPendulum-v5")                                  # doctest: +SKIP
>>> agent = DreamerAgent(env.observation_space, env.action_space)          # doctest: +SKIP
>>> action = agent.act(env.reset(seed=0)[0], explore=True)                 # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.profiler import record_function

from loopwm.agents.config import DreamerConfig
from loopwm.agents.planner import LatentPlanner
from loopwm.envs.spaces import ActionCodec, ObsCodec, check_spaces
from loopwm.errors import ConfigError, UnsupportedError
from loopwm.models import build_model, model_config
from loopwm.networks import adam, mlp, symexp, symlog
from loopwm.training import WorldModelTrainer, set_obs_statistics


class Actor(nn.Module):
    """Gaussian policy on the latent with a tanh-bounded mean and a bounded std.

    As in DreamerV3: the mean is ``tanh(.)`` in ``[-1, 1]`` and the std lies in
    ``[min_std, max_std]``, so exploration never collapses to a saturated deterministic
    action (a squashed Gaussian can drive its pre-tanh mean far out, where its gradient
    vanishes). Samples are clipped to ``[-1, 1]`` with a straight-through gradient.
    """

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        hidden_dim: int,
        min_std: float = 0.1,
        max_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.net = mlp(latent_dim, hidden_dim, 2 * action_dim)
        self.min_std, self.max_std = min_std, max_std

    def distribution(self, latent: torch.Tensor) -> torch.distributions.Normal:
        mean, std = self.net(latent).chunk(2, dim=-1)  # (B, A) each
        std = self.min_std + (self.max_std - self.min_std) * torch.sigmoid(std + 2.0)
        # valid by construction (std >= min_std > 0): skip the per-call argument checks
        return torch.distributions.Normal(torch.tanh(mean), std, validate_args=False)

    def sample(
        self, latent: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample (B, A) in ``[-1, 1]`` and its log-probability (B,)."""
        dist = self.distribution(latent)
        noise = torch.randn(dist.loc.shape, generator=generator, dtype=dist.loc.dtype)
        raw = dist.loc + dist.scale * noise.to(dist.loc.device)
        action = raw + (raw.clamp(-1.0, 1.0) - raw).detach()  # straight-through clip
        return action, dist.log_prob(raw.detach()).sum(-1)

    def log_prob(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-probability (B,) of actions (B, A)."""
        return self.distribution(latent).log_prob(action).sum(-1)

    def entropy(self, latent: torch.Tensor) -> torch.Tensor:
        """Entropy (B,) of the action distribution (analytic, before clipping)."""
        return self.distribution(latent).entropy().sum(-1)

    def mode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.distribution(latent).loc


class CategoricalActor(nn.Module):
    """Categorical policy over ``n`` discrete actions, given as one-hot vectors (B, n).

    As DreamerV3's discrete actor: the probabilities mix in 1% of the uniform
    distribution, and a sample is the one-hot vector of a Gumbel-max draw with the
    probabilities' straight-through gradient, so imagined returns can be backpropagated
    through the world model as for continuous actions (or ``actor_grad="reinforce"``).
    The interface is :class:`Actor`'s, with one-hot vectors in place of ``[-1, 1]`` actions.
    """

    def __init__(self, latent_dim: int, n: int, hidden_dim: int, unimix: float = 0.01) -> None:
        super().__init__()
        self.net = mlp(latent_dim, hidden_dim, n)
        self.n, self.unimix = n, unimix

    def probs(self, latent: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.net(latent), -1)
        return (1 - self.unimix) * probs + self.unimix / self.n  # (B, n)

    def sample(
        self, latent: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot sample (B, n) with straight-through gradients, and its log-probability."""
        probs = self.probs(latent)
        uniform = torch.rand(probs.shape, generator=generator, dtype=probs.dtype)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7))).to(probs.device)
        index = torch.argmax(probs.detach().log() + gumbel, -1)
        one_hot = nn.functional.one_hot(index, self.n).to(probs.dtype)
        action = one_hot + (probs - probs.detach())  # exactly one-hot, with p's gradient
        return action, probs.gather(-1, index[:, None]).squeeze(-1).log()

    def log_prob(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-probability (B,) of one-hot actions (B, n)."""
        return (action * self.probs(latent).log()).sum(-1)

    def entropy(self, latent: torch.Tensor) -> torch.Tensor:
        probs = self.probs(latent)
        return -(probs * probs.log()).sum(-1)

    def mode(self, latent: torch.Tensor) -> torch.Tensor:
        """The most probable action, one-hot (B, n)."""
        probs = self.probs(latent)
        return nn.functional.one_hot(probs.argmax(-1), self.n).to(probs.dtype)


class Critic(nn.Module):
    """State value of a latent, predicted in symlog space."""

    def __init__(self, latent_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.net = mlp(latent_dim, hidden_dim, 1)
        nn.init.zeros_(self.net[-1].weight)  # start at value 0, as DreamerV3 does
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent).squeeze(-1)  # (B,) symlog value

    def value(self, latent: torch.Tensor) -> torch.Tensor:
        return symexp(self(latent))  # (B,)


def lambda_returns(
    reward: torch.Tensor, cont: torch.Tensor, value: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """lambda-returns ``R_0..R_{H-1}`` of an imagined rollout.

    Args:
        reward: (B, H) reward of step ``t`` (reaching latent ``t+1``).
        cont: (B, H) continuation probability after step ``t``.
        value: (B, H + 1) values of latents ``0..H``.

    ``R_t = r_t + gamma c_t ((1 - lam) v_{t+1} + lam R_{t+1})`` with ``R_H = v_H``.
    """
    horizon = reward.shape[1]
    returns = [value[:, -1]]
    for t in reversed(range(horizon)):
        bootstrap = (1 - lam) * value[:, t + 1] + lam * returns[-1]
        returns.append(reward[:, t] + gamma * cont[:, t] * bootstrap)
    return torch.stack(returns[::-1][:-1], 1)  # (B, H)


@dataclass
class Imagination:
    """Actor-driven imagined rollouts of ``H`` steps from ``B`` start latents."""

    latent: torch.Tensor  # (B, H + 1, D) latents 0..H
    action: torch.Tensor  # (B, H, A) actions in [-1, 1]
    log_prob: torch.Tensor  # (B, H)
    reward: torch.Tensor  # (B, H)
    cont: torch.Tensor  # (B, H)
    iters: torch.Tensor  # (B, H) loop iterations per imagined step
    residual: torch.Tensor  # (B, H)
    uncertainty: torch.Tensor | None = None  # (B, H) members' disagreement (ensembles)


class DreamerAgent:
    """World model + actor + critic, trained from a replay, acting with or without a planner.

    Args:
        observation_space: flat Box or uint8 image observations (H, W, C) of the real env
            (images: a conv encoder and decoder, see ``LoopWMConfig.image_shape``).
        action_space: bounded Box or Discrete actions of the real env (Discrete: a
            categorical actor, one-hot actions in the world model, no planner).
        config: agent settings (defaults: LoopWM ``small``, horizon 15, no planner).
        seed: seeds parameters, imagination start states and action sampling.
        device: torch device.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        config: DreamerConfig | None = None,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        obs_dim, action_dim = check_spaces(observation_space, action_space, "DreamerAgent")
        self.config = cfg = config or DreamerConfig()
        self.device = torch.device(device)
        self.observation_space, self.action_space = observation_space, action_space
        self.observations = ObsCodec(observation_space, "DreamerAgent")
        self.actions = ActionCodec(action_space)
        if self.actions.discrete:
            if cfg.planner.kind != "none":
                raise UnsupportedError(
                    f"DreamerAgent: the {cfg.planner.kind} planner samples continuous action "
                    f"sequences; with Discrete actions ({action_space}) the actor acts "
                    f"(--planner none)"
                )
            # the actor's one-hot vectors are the model's actions: to_env is the identity
            low, high = -torch.ones(action_dim), torch.ones(action_dim)
        else:
            low = torch.as_tensor(action_space.low, dtype=torch.float32)
            high = torch.as_tensor(action_space.high, dtype=torch.float32)
        low, high = low.to(self.device), high.to(self.device)
        self._action_center, self._action_half = (high + low) / 2, (high - low) / 2

        torch.manual_seed(seed)
        wm_config = model_config(
            cfg.model,
            cfg.preset,
            obs_dim=obs_dim,
            action_dim=action_dim,
            image_shape=self.observations.image_shape,
            overrides=cfg.model_overrides,
        )
        if cfg.uncertainty_penalty > 0 and wm_config.ensemble < 2:
            raise ConfigError(
                "uncertainty_penalty needs an ensemble world model: set "
                "model_overrides={'ensemble': 5} (--wm.ensemble 5)"
            )
        world_model = build_model(cfg.model, wm_config).to(self.device)
        self.trainer = WorldModelTrainer(world_model, dataclasses.replace(cfg.model_fit, seed=seed))
        latent_dim = wm_config.latent_dim
        actor = CategoricalActor if self.actions.discrete else Actor
        self.actor = actor(latent_dim, action_dim, cfg.hidden_dim).to(self.device)
        self.critic = Critic(latent_dim, cfg.hidden_dim).to(self.device)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = adam(
            self.actor.parameters(), lr=cfg.actor_lr, eps=1e-5, device=self.device
        )
        self.critic_optimizer = adam(
            self.critic.parameters(), lr=cfg.critic_lr, eps=1e-5, device=self.device
        )
        self.return_scale = 0.0  # EMA of P95 - P5 of imagined returns (0: not yet measured)
        self.updates = 0
        self.normalizer_set = False
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.planner = None
        if cfg.planner.kind != "none":
            self.planner = LatentPlanner(
                cfg.planner,
                world_model,
                policy=lambda h: self.actor.sample(h, self.generator)[0],
                value=self.slow_critic.value,
                to_env=self.to_env,
                gamma=cfg.gamma,
            )
        self.last_imagined_iters = np.zeros(0, dtype=np.int64)
        self._plans: list[torch.Tensor | None] = []  # the planner's warm start of each env

    # ------------------------------------------------------------------ acting
    @property
    def world_model(self):
        return self.trainer.model

    def to_env(self, action: torch.Tensor) -> torch.Tensor:
        """Map actions in ``[-1, 1]`` to the env's bounds."""
        return self._action_center + self._action_half * action

    def reset(self, envs: list[int] | None = None) -> None:
        """Start of a new episode: the planner forgets its previous plan. ``envs``: the
        indices of a batch's envs whose episodes start (``None``: every env, and the
        single-observation plan)."""
        if self.planner is None:
            return
        if envs is None:
            self.planner.reset()
            self._plans = []
        for i in envs or ():
            if i < len(self._plans):
                self._plans[i] = None

    @contextmanager
    def evaluation(self) -> Iterator[None]:
        """Run whole evaluation episodes inside; the training episode's plan (the
        planner's warm start) is restored after them."""
        plan = self.planner.previous_plan if self.planner is not None else None
        try:
            yield
        finally:
            if self.planner is not None:
                self.planner.previous_plan = plan

    def histograms(self) -> dict[str, np.ndarray]:
        """Loop iterations of every step imagined by the last actor-critic update."""
        return {"loop/imagine_iters": self.last_imagined_iters}

    @torch.no_grad()
    def act(self, obs: np.ndarray, *, explore: bool) -> np.ndarray:
        """Env-scale action (A,) for one observation (O,), or actions (N, A) for the
        observations (N, O) of N envs stepped together: sampled (``explore``) or greedy.
        With a planner, each env of a batch keeps its own plan (see :meth:`reset`).

        The observation is checked here (shape, finite values): this is where real data
        enters the agent."""
        obs, single = self.observations.to_vectors(obs)  # (N, O) float32, checked
        with record_function("agent/act"):
            if single:
                return self._act(obs, explore, plans=None)[0]
            return self._act(obs, explore, plans=self._plans)

    def _act(self, obs: np.ndarray, explore: bool, plans: list | None) -> np.ndarray:
        """Actions (N, A) for observations (N, O). ``plans``: the planner's warm starts of
        a batch's envs (updated in place); ``None``: one env, warm-started by the planner's
        own ``previous_plan``."""
        self.world_model.eval()
        latent = self.world_model.encode(torch.as_tensor(obs, device=self.device))
        if self.planner is not None:
            action = self._plan(latent, explore, plans)
        elif explore:
            action = self.actor.sample(latent, self.generator)[0]
        else:
            action = self.actor.mode(latent)
        if explore and self.config.explore_std > 0 and not self.actions.discrete:
            noise = torch.randn(action.shape, generator=self.generator).to(self.device)
            action = (action + self.config.explore_std * noise).clamp(-1.0, 1.0)
        return self.actions.to_env(self.to_env(action).cpu().numpy())

    def _plan(self, latent: torch.Tensor, explore: bool, plans: list | None) -> torch.Tensor:
        planner = self.planner
        if plans is None:
            return planner.plan(latent, explore=explore, generator=self.generator)[None]
        plans.extend([None] * (len(latent) - len(plans)))
        own = planner.previous_plan  # the single-observation plan is left as it was
        actions = []
        for i in range(len(latent)):
            planner.previous_plan = plans[i]
            plan = planner.plan(latent[i : i + 1], explore=explore, generator=self.generator)
            actions.append(plan)
            plans[i] = planner.previous_plan
        planner.previous_plan = own
        return torch.stack(actions)

    # ------------------------------------------------------------------ learning
    def prepare(self, replay) -> None:
        """Fix the world model's observation standardisation from the first stored data."""
        set_obs_statistics(self.world_model, replay)
        self.normalizer_set = True

    def update(self, replay) -> dict[str, float]:
        """One world-model step on replayed windows, then one actor-critic step in imagination."""
        if not self.normalizer_set:
            self.prepare(replay)
        with record_function("agent/world_model_update"):
            metrics = self.trainer.train_step(replay)
        metrics.update(self.update_actor_critic(replay))
        self.updates += 1
        return metrics

    def imagine(
        self, start: torch.Tensor, horizon: int, *, grad: bool, through_model: bool = True
    ) -> Imagination:
        """Roll the actor out ``horizon`` steps in the world model from latents (B, D).

        With ``grad``, log-probabilities are differentiable with respect to the actor, and
        with ``through_model`` so are the imagined latents, rewards and continuations (the
        world model's own parameters receive no gradient).
        """
        wm = self.world_model
        wm.eval()  # inference-time halting; phantom gradient through the fixed point
        trainable = [p for p in wm.parameters() if p.requires_grad]
        for p in trainable:  # gradients reach the actions, never the model's parameters
            p.requires_grad_(False)
        try:
            return self._imagine(start, horizon, grad=grad, through_model=through_model)
        finally:
            for p in trainable:
                p.requires_grad_(True)

    def _imagine(
        self, start: torch.Tensor, horizon: int, *, grad: bool, through_model: bool
    ) -> Imagination:
        actions, log_probs = [], []

        def policy(latent: torch.Tensor) -> torch.Tensor:
            action, log_prob = self.actor.sample(latent, self.generator)
            actions.append(action)
            log_probs.append(log_prob)
            return self.to_env(action if through_model else action.detach())

        with torch.set_grad_enabled(grad):
            rollout = self.world_model.imagine(start, policy=policy, horizon=horizon)
        reward = rollout.reward
        if self.config.uncertainty_penalty > 0:  # pessimism where the members disagree
            reward = reward - self.config.uncertainty_penalty * rollout.uncertainty
        return Imagination(
            latent=torch.cat([start[:, None], rollout.latent], 1),
            action=torch.stack(actions, 1),
            log_prob=torch.stack(log_probs, 1),
            reward=reward,
            cont=rollout.cont,
            iters=rollout.iters,
            residual=rollout.residual,
            uncertainty=rollout.uncertainty,
        )

    def update_actor_critic(self, replay) -> dict[str, float]:
        """One actor and one critic step on rollouts imagined from replayed real states."""
        cfg = self.config
        wm = self.world_model
        obs = replay.sample_obs(cfg.imagine_batch, self.rng)  # float32, or uint8 pixels
        obs = torch.as_tensor(obs, device=self.device, dtype=torch.float32)
        with torch.no_grad():
            start = wm.encode(obs)  # (B, D)
        dynamics = cfg.actor_grad == "dynamics"
        with record_function("agent/imagine_forward"):
            rollout = self.imagine(start, cfg.horizon, grad=True, through_model=dynamics)
            slow_symlog = self.slow_critic(rollout.latent)  # (B, H + 1), input-differentiable
            value = symexp(slow_symlog)
            returns = lambda_returns(rollout.reward, rollout.cont, value, cfg.gamma, cfg.lam)
        with torch.no_grad():
            discount = cfg.gamma * rollout.cont  # (B, H)
            weight = torch.cumprod(
                torch.cat([torch.ones_like(discount[:, :1]), discount[:, :-1]], 1), 1
            )
            flat_returns = returns.detach().flatten()
            levels = torch.tensor(
                [0.05, 0.95], device=flat_returns.device, dtype=flat_returns.dtype
            )
            low, high = torch.quantile(flat_returns, levels)
            spread = float(high - low)
            decay = cfg.return_decay
            self.return_scale = (
                spread if self.updates == 0 else decay * self.return_scale + (1 - decay) * spread
            )
            scale = max(1.0, self.return_scale)

        flat = rollout.latent[:, :-1].detach().flatten(0, 1)  # (B * H, D)
        entropy = self.actor.entropy(flat).reshape(rollout.reward.shape)  # (B, H)
        if dynamics:
            objective = returns / scale
        else:
            advantage = (returns - value[:, :-1]).detach() / scale
            objective = advantage * rollout.log_prob
        actor_loss = -(weight * (objective + cfg.entropy_coef * entropy)).mean()
        with record_function("agent/actor_backward"):
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            actor_grad = nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
            self.actor_optimizer.step()
        with record_function("agent/critic_update"):
            critic_loss, critic_grad = self._critic_step(
                rollout.latent, returns, slow_symlog.detach(), weight
            )

        iters = rollout.iters.float()
        self.last_imagined_iters = rollout.iters.flatten().cpu().numpy()
        return {
            "actor/loss": float(actor_loss.detach()),
            "actor/entropy": float(entropy.detach().mean()),
            "actor/grad_norm": float(actor_grad),
            "actor/return_scale": self.return_scale,
            "critic/loss": float(critic_loss.detach()),
            "critic/grad_norm": float(critic_grad),
            "critic/value_mean": float(value[:, 0].detach().mean()),
            "imagine/return_mean": float(returns.detach()[:, 0].mean()),
            "imagine/reward_mean": float(rollout.reward.detach().mean()),
            "imagine/cont_mean": float(rollout.cont.detach().mean()),
            "loop/imagine_iters_mean": float(iters.mean()),
            "loop/imagine_iters_max": float(iters.max()),
            "loop/imagine_residual_mean": float(rollout.residual.detach().mean()),
            **(
                {"imagine/uncertainty_mean": float(rollout.uncertainty.detach().mean())}
                if rollout.uncertainty is not None
                else {}
            ),
        }

    def _critic_step(
        self,
        latent: torch.Tensor,
        returns: torch.Tensor,
        slow_symlog: torch.Tensor,
        weight: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Regress the critic on the returns of latents (B, H + 1, D), regularised towards
        the slow critic's predictions ``slow_symlog`` (B, H + 1) of the same latents, then
        move the slow critic towards it."""
        cfg = self.config
        latents = latent[:, :-1].detach().flatten(0, 1)  # (B * H, D)
        prediction = self.critic(latents)
        target = symlog(returns.detach().flatten())
        slow = slow_symlog[:, :-1].flatten()  # the slow critic's forward pass, reused
        critic_loss = (
            weight.flatten()
            * ((prediction - target).pow(2) + cfg.slow_critic_reg * (prediction - slow).pow(2))
        ).mean()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        critic_grad = nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip)
        self.critic_optimizer.step()
        with torch.no_grad():
            mix = 1.0 - cfg.slow_critic_decay
            for slow_p, p in zip(
                self.slow_critic.parameters(), self.critic.parameters(), strict=True
            ):
                slow_p.lerp_(p, mix)
        return critic_loss, critic_grad

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything a resume needs: networks, optimizers, return scale, samplers' states."""
        return {
            "world_model": self.world_model.state_dict(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "slow_critic": self.slow_critic.state_dict(),
            "world_model_optimizer": self.trainer.optimizer.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "return_scale": float(self.return_scale),
            "updates": int(self.updates),
            "world_model_steps": int(self.trainer.steps),
            "normalizer_set": bool(self.normalizer_set),
            "rng": json.dumps(self.rng.bit_generator.state),
            "trainer_rng": json.dumps(self.trainer.rng.bit_generator.state),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.world_model.load_state_dict(state["world_model"])
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.slow_critic.load_state_dict(state["slow_critic"])
        self.trainer.optimizer.load_state_dict(state["world_model_optimizer"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.return_scale = float(state["return_scale"])
        self.updates = int(state["updates"])
        self.trainer.steps = int(state["world_model_steps"])
        self.normalizer_set = bool(state["normalizer_set"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.trainer.rng.bit_generator.state = json.loads(state["trainer_rng"])
        self.generator.set_state(state["generator"])
