"""Grasping environments for sim2real.

Importing this package registers every id in ``ENV_IDS`` with gymnasium::

    import gymnasium as gym
    import envs
    env = gym.make("PandaGrasp-v0", image_size=64)
"""

import gymnasium

from envs.camera import Camera, Intrinsics
from envs.config import EnvConfig, RandomizationConfig
from envs.grasp_env import GraspEnv

ENV_IDS = ("PandaGrasp-v0", "PandaGraspState-v0")
_KWARGS = {"PandaGrasp-v0": {"observation": "pixels"},
           "PandaGraspState-v0": {"observation": "state"}}

for _id in ENV_IDS:
    if _id not in gymnasium.registry:
        gymnasium.register(_id, entry_point="envs.grasp_env:GraspEnv", kwargs=_KWARGS[_id])

__all__ = ["ENV_IDS", "Camera", "EnvConfig", "GraspEnv", "Intrinsics", "RandomizationConfig"]
