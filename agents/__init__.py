"""Agents for loopwm (installed as ``loopwm.agents``).

- :class:`DreamerAgent`: a looped world model with an actor-critic that learns in
  imagination and an optional MPPI/CEM planner; :func:`train` runs it online
  (``loopwm train``).
- stable-baselines3 adapters: load a saved SB3 policy as an action source, train an SB3
  agent entirely inside a learned world model (:func:`train_in_dream`), or train an
  off-policy SB3 agent on real plus imagined data (:class:`DynaCallback`).
"""

from loopwm.agents.config import DreamerConfig, PlannerConfig, TrainConfig
from loopwm.agents.dreamer import DreamerAgent
from loopwm.agents.dyna import DynaCallback, DynaConfig
from loopwm.agents.planner import LatentPlanner
from loopwm.agents.run import load_agent
from loopwm.agents.sb3 import (
    SB3_ALGOS,
    SB3Actor,
    load_sb3_policy,
    make_sb3_agent,
    train_in_dream,
)
from loopwm.agents.train import evaluate_agent, train

__all__ = [
    "SB3_ALGOS",
    "SB3Actor",
    "DreamerAgent",
    "DreamerConfig",
    "DynaCallback",
    "DynaConfig",
    "LatentPlanner",
    "PlannerConfig",
    "TrainConfig",
    "evaluate_agent",
    "load_agent",
    "load_sb3_policy",
    "make_sb3_agent",
    "train",
    "train_in_dream",
]
