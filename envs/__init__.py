"""Environments for loopwm (installed as ``loopwm.envs``).

:func:`check_box_env` is the boundary check every loopwm entry point applies to a real
environment: flat ``Box`` observations and ``Box`` actions.
"""

from loopwm.envs.spaces import box_space_meta, check_box_env, make_env

__all__ = ["box_space_meta", "check_box_env", "make_env"]
