"""Agents for loopwm (installed as ``loopwm.agents``).

So far: stable-baselines3 policies as action sources for data collection.
"""

from loopwm.agents.sb3 import SB3_ALGOS, load_sb3_policy

__all__ = ["SB3_ALGOS", "load_sb3_policy"]
