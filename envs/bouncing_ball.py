"""``loopwm/BouncingBall-v0``: a contact-rich task where transition difficulty is known.

A ball (radius 0.1) moves in the x-z plane of a closed 2 x 2 box under gravity, pushed by
a force ``action * 10`` N along x and z. Contacts with the walls, floor and ceiling are
nearly elastic, so the ball keeps bouncing. Observation: ``[x, z, vx, vz]``, positions
measured from the centre of the box. Reward: ``1 - ||(x, z)||`` (stay near the centre).
Episodes never terminate; gymnasium's ``TimeLimit`` truncates them after 500 steps.

``info["contact"]`` says whether the ball touched anything during the step (checked at
every physics sub-step, from MuJoCo's contact list), ``info["contact_substeps"]`` in how
many of the ``frame_skip`` sub-steps, and ``info["contact_geoms"]`` which geoms it touched.
"""

from __future__ import annotations

from importlib import resources

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco import MujocoEnv


class BouncingBallEnv(MujocoEnv):
    """See the module docstring."""

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 50}

    def __init__(self, frame_skip: int = 5, **kwargs) -> None:
        xml = resources.files("loopwm.envs") / "assets" / "bouncing_ball.xml"
        obs_space = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float64)
        kwargs.setdefault("camera_name", "front")
        kwargs.setdefault("width", 480)
        kwargs.setdefault("height", 480)
        MujocoEnv.__init__(self, str(xml), frame_skip, observation_space=obs_space, **kwargs)
        self.metadata = {**self.metadata, "render_fps": int(np.round(1.0 / self.dt))}
        self._ball = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, "ball")

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float64)

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.data.ctrl[:] = action
        touched: set[str] = set()
        substeps = 0
        for _ in range(self.frame_skip):
            mujoco.mj_step(self.model, self.data)
            hit = False
            for contact in self.data.contact[: self.data.ncon]:
                if self._ball in (contact.geom1, contact.geom2):
                    other = contact.geom2 if contact.geom1 == self._ball else contact.geom1
                    touched.add(mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_GEOM, other))
                    hit = True
            substeps += hit
        mujoco.mj_rnePostConstraint(self.model, self.data)
        obs = self._get_obs()
        reward = 1.0 - float(np.linalg.norm(obs[:2]))
        info = {
            "contact": substeps > 0,
            "contact_substeps": substeps,
            "contact_geoms": sorted(touched),
        }
        if self.render_mode == "human":
            self.render()
        return obs, reward, False, False, info

    def reset_model(self) -> np.ndarray:
        # qpos is the ball's offset from the box centre (its body sits at x=0, z=1)
        position = self.np_random.uniform(-0.7, 0.7, size=2)
        velocity = self.np_random.uniform(-3.0, 3.0, size=2)
        self.set_state(position, velocity)
        return self._get_obs()
