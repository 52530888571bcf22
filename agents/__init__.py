"""Agents for loopwm (installed as ``loopwm.agents``).

stable-baselines3 adapters: load a saved SB3 policy as an action source, train an SB3
agent entirely inside a learned world model (:func:`train_in_dream`), or train an
off-policy SB3 agent on real plus imagined data (:class:`DynaCallback`).
"""

from loopwm.agents.dyna import DynaCallback, DynaConfig
from loopwm.agents.sb3 import SB3_ALGOS, load_sb3_policy, make_sb3_agent, train_in_dream

__all__ = [
    "SB3_ALGOS",
    "DynaCallback",
    "DynaConfig",
    "load_sb3_policy",
    "make_sb3_agent",
    "train_in_dream",
]
