"""World-model loss: multi-step open-loop prediction plus latent consistency."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from loopwm.config import FitConfig
from loopwm.networks import symlog
from loopwm.world_model import WorldModel


def batch_to_tensors(batch: dict, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Numpy windows from :class:`~loopwm.replay.Replay` as float tensors on ``device``."""
    return {k: torch.as_tensor(v, device=device).float() for k, v in batch.items()}


def world_model_loss(
    model: WorldModel, batch: dict[str, torch.Tensor], cfg: FitConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Open-loop loss over the batch's horizon.

    From ``h_0 = encode(o_0)`` the model imagines ``H`` steps under the stored actions
    (never re-encoding real observations), and each step ``k`` is scored on the next
    observation (standardised units), the symlog reward, the continuation flag, and the
    distance of ``h_k`` to the (stop-gradient) encoding of the real next observation,
    weighted ``horizon_discount**k`` and masked past the end of the episode. The
    observation ``o_0`` is also reconstructed from ``h_0``.

    Args:
        batch: ``obs0`` (B, O), ``action`` (B, H, A), ``next_obs`` (B, H, O),
            ``reward`` (B, H), ``terminated`` (B, H), ``mask`` (B, H).

    Returns:
        ``(loss, metrics)`` with slash-namespaced metric keys.
    """
    weights = cfg.loss_weights
    obs0, actions, next_obs = batch["obs0"], batch["action"], batch["next_obs"]
    batch_size, horizon = actions.shape[:2]
    mean, std = model.obs_mean, model.obs_std
    target_obs = (next_obs - mean) / std  # (B, H, O)
    with torch.no_grad():
        target_latent = model._encode(next_obs.reshape(batch_size * horizon, -1))
        target_latent = target_latent.reshape(batch_size, horizon, -1)  # (B, H, D)
    target_cont = 1.0 - batch["terminated"]  # (B, H)
    target_reward = symlog(batch["reward"])  # (B, H)
    discount = cfg.horizon_discount ** torch.arange(horizon, dtype=obs0.dtype, device=obs0.device)
    step_weight = batch["mask"] * discount  # (B, H)
    total_weight = step_weight.sum().clamp_min(1e-8)

    latent = model._encode(obs0)  # (B, D)
    recon = F.mse_loss(model._decode_normalized(latent), (obs0 - mean) / std)
    terms = {"obs": 0.0, "reward": 0.0, "cont": 0.0, "consistency": 0.0}
    aux, iters = [], []
    with model.reuse_weights():
        for k in range(horizon):
            u = model._inject(latent, actions[:, k])
            tr = model._transition(
                latent, u, tol=model.config.tol, max_iters=model.config.max_iters
            )
            latent = tr.latent  # (B, D)
            w = step_weight[:, k]  # (B,)
            obs_err = (model._decode_normalized(latent) - target_obs[:, k]).pow(2).mean(-1)
            reward_err = (model._reward_symlog(latent) - target_reward[:, k]).pow(2)
            cont_err = F.binary_cross_entropy_with_logits(
                model._cont_logit(latent), target_cont[:, k], reduction="none"
            )
            latent_err = (latent - target_latent[:, k]).pow(2).mean(-1)
            terms["obs"] = terms["obs"] + (w * obs_err).sum()
            terms["reward"] = terms["reward"] + (w * reward_err).sum()
            terms["cont"] = terms["cont"] + (w * cont_err).sum()
            terms["consistency"] = terms["consistency"] + (w * latent_err).sum()
            iters.append(tr.iters.float())
            if tr.aux_loss is not None:
                aux.append(tr.aux_loss)
    terms = {k: v / total_weight for k, v in terms.items()}
    loss = recon + sum(weights[k] * terms[k] for k in terms)
    if aux:
        aux_loss = torch.stack(aux).mean()
        loss = loss + aux_loss
    all_iters = torch.stack(iters)
    metrics = {
        "wm/loss": float(loss.detach()),
        "wm/recon_loss": float(recon.detach()),
        **{f"wm/{k}_loss": float(v.detach()) for k, v in terms.items()},
        "loop/iters_mean": float(all_iters.mean()),
        "loop/iters_max": float(all_iters.max()),
    }
    if aux:
        metrics["loop/aux_loss"] = float(aux_loss.detach())
    return loss, metrics
