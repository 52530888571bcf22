"""The interface every loopwm world model shares: encode, step, decode, imagine.

A world model maps an observation to a latent (:meth:`~WorldModel.encode`), a latent and
an action to the next latent with reward and continuation (:meth:`~WorldModel.step`),
and a latent back to an observation (:meth:`~WorldModel.decode`);
:meth:`~WorldModel.imagine` rolls it out under given actions or a policy.

These verbs are the fast path: they take ``(B, ...)`` float tensors on the model's device
and check nothing that would cost a host sync. Data from outside (users, files, envs) is
validated once where it enters, with :meth:`WorldModel.check_input` (as ``DreamEnv``,
``DreamerAgent.act`` and the command line do).

Subclasses supply only ``_transition``: how ``(h, u) -> h_next`` is computed from the
injected input ``u = prelude(h, a)``. LoopWM iterates one certified block; the baselines
stack untied blocks, run a GRU cell, or loop an unconstrained block.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from loopwm.checks import check_positive_int
from loopwm.config import LoopWMConfig
from loopwm.errors import CheckpointError, ConfigError, UnsupportedError
from loopwm.networks import ConvDecoder, ConvEncoder, MemberMLPs, mlp, symexp, symlog

ArrayLike = torch.Tensor | np.ndarray
Policy = Callable[[torch.Tensor], torch.Tensor]  # latent (B, D) -> action (B, action_dim)


@dataclass
class StepOutput:
    """One imagined transition for a batch of ``B`` samples."""

    latent: torch.Tensor  # (B, latent_dim) next latent h_{t+1}
    reward_symlog: torch.Tensor  # (B,) reward head output (symlog units)
    cont_logit: torch.Tensor  # (B,) continuation head output (logit)
    iters: torch.Tensor  # (B,) int64 loop iterations spent on each sample
    residual: torch.Tensor  # (B,) ||x^K - x^{K-1}|| at the last iteration
    aux_loss: torch.Tensor | None = None  # extra training loss of the step (a halting gate)
    members: torch.Tensor | None = None  # (K, B, latent_dim) each member's next latent
    member_obs: torch.Tensor | None = None  # (K, B, obs_dim) their decoded obs, standardised
    member_reward_symlog: torch.Tensor | None = None  # (K, B) each member's reward head
    member_cont_logit: torch.Tensor | None = None  # (K, B) each member's continuation head
    uncertainty: torch.Tensor | None = None  # (B,) the members' disagreement (ensembles)

    @property
    def reward(self) -> torch.Tensor:
        """(B,) predicted reward of the transition."""
        return symexp(self.reward_symlog)

    @property
    def cont(self) -> torch.Tensor:
        """(B,) predicted probability that the episode continues."""
        return torch.sigmoid(self.cont_logit)

    def follow(self, member: torch.Tensor) -> StepOutput:
        """An ensemble's step as member ``member[b]`` alone predicts it for each sample
        ``b`` (``member``: (B,) int64): its next latent, reward and continuation (PETS'
        TS1 and MBPO's random member per step). ``iters``, ``residual`` and
        ``uncertainty`` stay the ensemble's."""
        if self.members is None:
            raise ConfigError("follow needs an ensemble's step (config.ensemble >= 2)")
        rows = torch.arange(len(member), device=member.device)
        return replace(
            self,
            latent=self.members[member, rows],
            reward_symlog=self.member_reward_symlog[member, rows],
            cont_logit=self.member_cont_logit[member, rows],
        )


@dataclass
class Transition:
    """What a subclass's ``_transition`` returns."""

    latent: torch.Tensor  # (B, D), or (K, B, D) for an ensemble's members
    iters: torch.Tensor  # (B,) int64, or (K, B)
    residual: torch.Tensor  # (B,), or (K, B)
    aux_loss: torch.Tensor | None = None  # extra training loss (e.g. a halting gate)


@dataclass
class Rollout:
    """An imagined rollout of ``T`` steps for ``B`` samples."""

    latent: torch.Tensor  # (B, T, D) latents h_1..h_T
    action: torch.Tensor  # (B, T, action_dim) the actions imagined under
    reward: torch.Tensor  # (B, T)
    cont: torch.Tensor  # (B, T)
    iters: torch.Tensor  # (B, T) int64
    residual: torch.Tensor  # (B, T)
    uncertainty: torch.Tensor | None = None  # (B, T) members' disagreement (ensembles)


def disagreement(
    member_obs: torch.Tensor, member_reward_symlog: torch.Tensor, member_cont_logit: torch.Tensor
) -> torch.Tensor:
    """RMS over predicted quantities of the members' standard deviation: the decoded
    observation (K, B, obs_dim, standardised), the reward (K, B, symlog units) and the
    continuation probability (K, B) -> (B,)."""
    predicted = torch.cat(
        [member_obs, member_reward_symlog[..., None], torch.sigmoid(member_cont_logit)[..., None]],
        -1,
    )
    spread = predicted - predicted.mean(0)  # faster than std(0) on CPU
    return spread.pow(2).mean((0, 2)).sqrt()


def mean_probability_logit(logits: torch.Tensor) -> torch.Tensor:
    """Logit of the mean probability of (K, B) logits over the K members: (B,)."""
    log_k = math.log(logits.shape[0])
    log_p = torch.logsumexp(F.logsigmoid(logits), 0) - log_k
    log_not_p = torch.logsumexp(F.logsigmoid(-logits), 0) - log_k
    return log_p - log_not_p


_MEMBER_KEY = re.compile(r"(?:^|\.)(?:members|cells)\.(\d+)\.")


def ensemble_size(names) -> int:
    """Members of the ensemble whose weights are named ``names`` (state-dict keys): 1 for
    a single model."""
    indices = [int(m.group(1)) for name in names if (m := _MEMBER_KEY.search(name))]
    return max(indices) + 1 if indices else 1


class WorldModel(nn.Module):
    """Base class: encoder, prelude, decoder heads, the imagination loop and input checks.

    Args:
        config: sizes and loop settings (an instance of the family's ``config_class``);
            ``obs_dim`` and ``action_dim`` come from the env.
    """

    kind: ClassVar[str] = ""
    looped: ClassVar[bool] = False
    reads_previous: ClassVar[bool] = False
    """Whether ``_transition`` takes ``previous=``, the latents ``h_{t-1}`` (LoopWM's
    ``warm_start="extrapolate"``); a family that does not declare it is never passed one."""
    config_class: ClassVar[type[LoopWMConfig]] = LoopWMConfig
    decodes: bool = True
    """Whether the decoder is trained: ``False`` for a model trained decoder-free
    (``FitConfig.loss_weights["obs"] == 0``), whose :meth:`decode` refuses, since the
    observations it would return mean nothing. Set by the trainer, kept in checkpoints."""

    def __init__(self, config: LoopWMConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise UnsupportedError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config
        c = config
        if c.image_shape:  # pixels: convolutional encoder and decoder
            self.encoder = ConvEncoder(c.image_shape, c.conv_depth, c.latent_dim)
            self.decoder = ConvDecoder(c.latent_dim, c.image_shape, c.conv_depth)
        else:
            self.encoder = mlp(c.obs_dim, c.hidden_dim, c.latent_dim)
            self.decoder = mlp(c.latent_dim, c.hidden_dim, c.obs_dim)
        if c.ensemble == 1:
            self.reward_head = mlp(c.latent_dim, c.hidden_dim, 1, layers=1)
            self.cont_head = mlp(c.latent_dim, c.hidden_dim, 1, layers=1)
        else:  # each member predicts the whole transition: its own reward and continuation
            self.reward_head = MemberMLPs(c.ensemble, c.latent_dim, c.hidden_dim, 1, layers=1)
            self.cont_head = MemberMLPs(c.ensemble, c.latent_dim, c.hidden_dim, 1, layers=1)
        # The prelude ends in a LayerNorm without affine parameters: ||u|| <= sqrt(inject_dim)
        # for every input, which is what makes the latent-norm bound hold.
        self.prelude = nn.Sequential(
            mlp(c.latent_dim + c.action_dim, c.hidden_dim, c.inject_dim),
            nn.LayerNorm(c.inject_dim, elementwise_affine=False),
        )
        # images are bounded (uint8): only flat observations are squashed
        self._symlog = c.obs_symlog and not c.image_shape
        self.register_buffer("obs_mean", torch.zeros(c.obs_dim))
        self.register_buffer("obs_std", torch.ones(c.obs_dim))

    # ------------------------------------------------------------------ the verbs
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Latent of a batch of raw observations: (B, obs_dim) -> (B, latent_dim)."""
        return self.encoder(self.standardize(obs))

    def decode(self, latent: torch.Tensor, *, standardized: bool = False) -> torch.Tensor:
        """Observation predicted from a latent: (B, latent_dim) -> (B, obs_dim), in raw
        units, or in the model's standardised units with ``standardized=True``."""
        self.require_decoder("decode")
        obs = self.decoder(latent)
        if standardized:
            return obs
        if self._symlog:
            obs = symexp(obs)
        return obs * self.obs_std + self.obs_mean

    def require_decoder(self, what: str) -> None:
        """Refuse ``what`` (something that needs decoded observations) for a model trained
        decoder-free."""
        if not self.decodes:
            raise UnsupportedError(
                f"{what} needs observations decoded by the world model, and this model was "
                f"trained decoder-free (loss_weights obs = 0): it predicts latents, rewards "
                f"and continuations only; train it with an obs weight above 0"
            )

    def standardize(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations (..., obs_dim) in the model's standardised units (symlog of
        them with ``config.obs_symlog``, for flat observations)."""
        scaled = (obs - self.obs_mean) / self.obs_std
        return symlog(scaled) if self._symlog else scaled

    def reward(self, latent: torch.Tensor) -> torch.Tensor:
        """Reward predicted for the transition that reached ``latent``: (B, D) -> (B,)."""
        return symexp(self.reward_symlog(latent))

    def cont(self, latent: torch.Tensor) -> torch.Tensor:
        """Probability that the episode continues after ``latent``: (B, D) -> (B,)."""
        return torch.sigmoid(self.cont_logit(latent))

    def reward_symlog(self, latent: torch.Tensor) -> torch.Tensor:
        """The reward head's output in symlog units (what the loss regresses): (B,). An
        ensemble's members each have a head: their mean."""
        out = self.reward_head(latent).squeeze(-1)
        return out if self.config.ensemble == 1 else out.mean(0)

    def cont_logit(self, latent: torch.Tensor) -> torch.Tensor:
        """The continuation head's logit (what the loss classifies): (B,). An ensemble's
        members each have a head: the logit of their mean probability."""
        out = self.cont_head(latent).squeeze(-1)
        return out if self.config.ensemble == 1 else mean_probability_logit(out)

    def step(
        self,
        latent: torch.Tensor,
        action: torch.Tensor,
        *,
        previous: torch.Tensor | None = None,
        tol: float | None = None,
        max_iters: int | None = None,
    ) -> StepOutput:
        """One imagined transition ``(h_t, a_t) -> h_{t+1}`` with reward and continuation.

        With an ensemble (``config.ensemble = K >= 2``) every member steps from ``h_t``
        and reads its own next latent with its own heads: the output's ``members`` holds
        their K next latents, ``member_obs``, ``member_reward_symlog`` and
        ``member_cont_logit`` what each predicts; ``latent`` is their mean, the reward
        their mean, the continuation their mean probability, ``iters`` and ``residual``
        the largest member's, and ``uncertainty`` their disagreement
        (:meth:`disagreement`).

        Args:
            latent: (B, latent_dim) current latents.
            action: (B, action_dim) actions in the env's units.
            previous: (B, latent_dim) the latents ``h_{t-1}`` before ``latent``, or
                ``None``: where the loop starts with ``warm_start="extrapolate"`` (other
                starts and families without :attr:`reads_previous` do not read it).
            tol: halting tolerance for this call (defaults to ``config.tol``).
            max_iters: iteration cap for this call (defaults to ``config.max_iters``);
                raising it at test time spends more computation per transition.
        """
        tol, max_iters = self.loop_settings(tol, max_iters)
        inject = self.prelude(torch.cat([latent, action], dim=-1))  # (B, inject_dim)
        extra = {"previous": previous} if self.reads_previous else {}
        tr = self._transition(latent, inject, tol=tol, max_iters=max_iters, **extra)
        if tr.latent.ndim == 2:
            return StepOutput(
                latent=tr.latent,
                reward_symlog=self.reward_symlog(tr.latent),
                cont_logit=self.cont_logit(tr.latent),
                iters=tr.iters,
                residual=tr.residual,
                aux_loss=tr.aux_loss,
            )
        member_obs, member_reward, member_cont = self._member_predictions(tr.latent)
        return StepOutput(
            latent=tr.latent.mean(0),
            reward_symlog=member_reward.mean(0),
            cont_logit=mean_probability_logit(member_cont),
            iters=tr.iters.amax(0),
            residual=tr.residual.amax(0),
            aux_loss=tr.aux_loss,
            members=tr.latent,
            member_obs=member_obs,
            member_reward_symlog=member_reward,
            member_cont_logit=member_cont,
            uncertainty=disagreement(member_obs, member_reward, member_cont),
        )

    def disagreement(self, members: torch.Tensor) -> torch.Tensor:
        """How much an ensemble's members disagree about the transition that reached
        their latents ``members`` (K, B, latent_dim), each decoded by the shared decoder
        and read by its own heads: the root-mean-square over predicted quantities of the
        members' standard deviation (B,). The quantities are the next observation in the
        model's standardised units (1.0 is one standard deviation of the training data;
        a decoder-free model: the latent itself), the reward in symlog units and the
        continuation probability."""
        return disagreement(*self._member_predictions(members))

    def _member_predictions(
        self, members: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What each member predicts from its own latent (K, B, latent_dim): the decoded
        observation (K, B, obs_dim, standardised; a decoder-free model's latent itself),
        its reward head's symlog reward and its continuation head's logit (K, B each)."""
        return (
            self.decoder(members) if self.decodes else members,
            self.reward_head(members).squeeze(-1),
            self.cont_head(members).squeeze(-1),
        )

    def imagine(
        self,
        latent: torch.Tensor,
        actions: torch.Tensor | None = None,
        *,
        policy: Policy | None = None,
        horizon: int | None = None,
        tol: float | None = None,
        max_iters: int | None = None,
    ) -> Rollout:
        """Roll out from ``latent`` (B, D) under ``actions`` (B, T, action_dim), or for
        ``horizon`` steps under ``policy`` (latent (B, D) -> action (B, action_dim)).

        The block's effective weights are computed once for the whole rollout. With
        gradients enabled the rollout is differentiable (through LoopWM's fixed point by
        its phantom gradient).
        """
        if (actions is None) == (policy is None):
            raise ConfigError("imagine needs either actions or a policy (with a horizon)")
        if policy is not None and horizon is None:
            raise ConfigError("imagine with a policy needs a horizon")
        steps = actions.shape[1] if actions is not None else horizon
        if steps < 1:
            raise ConfigError(f"imagine needs at least one step, got {steps}")
        tol, max_iters = self.loop_settings(tol, max_iters)
        outputs, taken, previous = [], [], None
        with self.reuse_weights():
            for t in range(steps):
                action = actions[:, t] if actions is not None else policy(latent)
                out = self.step(latent, action, previous=previous, tol=tol, max_iters=max_iters)
                previous, latent = latent, out.latent
                outputs.append(out)
                taken.append(action)
        return Rollout(
            latent=torch.stack([o.latent for o in outputs], 1),
            action=torch.stack(taken, 1),
            reward=torch.stack([o.reward for o in outputs], 1),
            cont=torch.stack([o.cont for o in outputs], 1),
            iters=torch.stack([o.iters for o in outputs], 1),
            residual=torch.stack([o.residual for o in outputs], 1),
            uncertainty=(
                torch.stack([o.uncertainty for o in outputs], 1)
                if outputs[0].uncertainty is not None
                else None
            ),
        )

    # ------------------------------------------------------------------ boundaries
    def check_input(self, x: ArrayLike, name: str) -> torch.Tensor:
        """Validate outside data and move it to the model: ``name`` is ``obs``, ``action``
        or ``latent``, ``x`` a (B, dim) float tensor or array of finite values.

        Raises a :class:`~loopwm.errors.ConfigError` (a ``ValueError``) for a wrong shape
        or a NaN, and an :class:`~loopwm.errors.UnsupportedError` (a ``TypeError``) for a
        non-float input, naming what was expected.
        """
        dims = {
            "obs": self.config.obs_dim,
            "action": self.config.action_dim,
            "latent": self.config.latent_dim,
        }
        if name not in dims:
            raise ConfigError(f"check_input checks one of {sorted(dims)}, got {name!r}")
        if isinstance(x, np.ndarray):
            if not np.issubdtype(x.dtype, np.floating):
                raise UnsupportedError(f"{name} must be a floating-point array, got {x.dtype}")
            x = torch.from_numpy(x)
        elif not isinstance(x, torch.Tensor):
            raise UnsupportedError(
                f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}"
            )
        if not x.is_floating_point():
            raise UnsupportedError(f"{name} must be a floating-point tensor, got {x.dtype}")
        dim = dims[name]
        if x.ndim != 2 or x.shape[1] != dim:
            hint = f" (for a single sample use {name}[None])" if x.ndim == 1 else ""
            raise ConfigError(f"{name} must have shape (batch, {dim}), got {tuple(x.shape)}{hint}")
        if not torch.isfinite(x).all():
            raise ConfigError(f"{name} contains NaN or inf")
        parameter = next(self.parameters())
        return x.to(device=parameter.device, dtype=parameter.dtype)

    def loop_settings(self, tol: float | None, max_iters: int | None) -> tuple[float, int]:
        """``(tol, max_iters)`` with the config's defaults filled in, checked."""
        tol = self.config.tol if tol is None else tol
        max_iters = self.config.max_iters if max_iters is None else max_iters
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
            raise ConfigError(f"tol must be a number >= 0, got {tol!r}")
        check_positive_int("max_iters", max_iters)
        return float(tol), max_iters

    # ------------------------------------------------------------------ the rest
    def contraction_bound(self) -> float:
        """Certified contraction factor of the loop (looped models only)."""
        raise UnsupportedError(f"the {self.kind!r} model has no loop, so no contraction bound")

    def set_obs_normalizer(self, mean: ArrayLike, std: ArrayLike) -> None:
        """Set the observation standardisation (from training data); saved with the model."""
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        std = torch.as_tensor(np.asarray(std, dtype=np.float32))
        if mean.shape != (self.config.obs_dim,) or std.shape != (self.config.obs_dim,):
            raise ConfigError(f"mean and std must have shape ({self.config.obs_dim},)")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()) or (std <= 0).any():
            raise ConfigError("mean must be finite and std finite and positive")
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(std)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, refusing weights of another ensemble size (an
        ensemble's weights into a single model, or the reverse) with a clear error
        rather than a list of missing keys, and never a silent pick of one member."""
        stored = ensemble_size(state_dict)
        if stored != self.config.ensemble:
            raise CheckpointError(
                f"the weights hold an ensemble of {stored} member(s), but this {self.kind} "
                f"model has ensemble={self.config.ensemble}"
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @contextmanager
    def reuse_weights(self) -> Iterator[None]:
        """Compute per-call derived weights once for a block of transitions (no-op here)."""
        yield

    def _transition(
        self, latent: torch.Tensor, inject: torch.Tensor, *, tol: float, max_iters: int
    ) -> Transition:
        raise NotImplementedError
