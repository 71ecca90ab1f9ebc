"""The Franka Panda: end-effector delta control through inverse kinematics, and proprioception.

End effector: the ``panda_grasptarget`` link, the point midway between the fingertips.
Yaw: rotation of the gripper about the base z axis, radians, 0 when the hand's x axis is the base
x axis; the fingers close along (sin yaw, -cos yaw, 0). The hand always points straight down.
Gripper opening: distance between the fingers, metres, 0 to 0.08.
"""

from __future__ import annotations

import functools
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pybullet
import pybullet_data

from envs.sim import Sim

ARM_JOINTS = tuple(range(7))
FINGER_JOINTS = (9, 10)
EE_LINK = 11
ARM_FORCES = (87.0,) * 4 + (12.0,) * 3
MAX_OPENING = 0.08  # m
YAW_LIMITS = (-math.pi / 2, math.pi / 2)
# Joint angles near which IK keeps the elbow up and the wrist centred (null-space rest pose).
REST_POSE = (0.0, 0.1, 0.0, -2.3, 0.0, 2.4, math.pi / 4)
VISUAL_MODES = ("gripper", "full")
# Boxes (size, centre in the link frame) matching the bounds of the hand and finger meshes.
GRIPPER_BOXES = {"panda_hand": ("0.064 0.204 0.092", "0 -0.002 0.02"),
                 "panda_leftfinger": ("0.02 0.026 0.054", "0 0.013 0.027"),
                 "panda_rightfinger": ("0.02 0.026 0.054", "0 -0.013 0.027")}


@functools.lru_cache(maxsize=2)
def panda_urdf(visual: str) -> str:
    """Path of the Panda URDF to load.

    "full" is pybullet_data's own file. "gripper" drops the arm links' visual meshes (the policy
    camera looks at the tray, and those meshes cost 5x a 64x64 frame to rasterise on the CPU) and
    draws hand and fingers as boxes with the bounds of their meshes. Collision and dynamics are the same.
    """
    source = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
    if visual == "full":
        return str(source)
    if visual not in VISUAL_MODES:
        raise ValueError(f"robot_visual: unknown mode {visual!r}; choose from {VISUAL_MODES}")
    text = source.read_text()
    text = text.replace("package://", f"{source.parent}/")

    def strip_visual(match: re.Match) -> str:
        link = match.group(0)
        name = re.search(r'name="([^"]+)"', link).group(1)
        box = GRIPPER_BOXES.get(name)
        visual = "" if box is None else (
            f'<visual><origin rpy="0 0 0" xyz="{box[1]}"/>'
            f'<geometry><box size="{box[0]}"/></geometry></visual>')
        return re.sub(r"<visual>.*?</visual>", visual, link, flags=re.S)

    text = re.sub(r"<link name=.*?</link>", strip_visual, text, flags=re.S)
    cache = Path(os.environ.get("SIM2REAL_CACHE", tempfile.gettempdir()))
    out = cache / f"sim2real_panda_{visual}.urdf"
    tmp = cache / f".{out.name}.{os.getpid()}"
    tmp.write_text(text)
    os.replace(tmp, out)  # atomic: parallel workers never read half a file
    return str(out)


def yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """Orientation of a downward-pointing hand rotated by yaw about base z."""
    return pybullet.getQuaternionFromEuler([math.pi, 0.0, yaw])


class Panda:
    """A fixed-base Panda at the base-frame origin, driven by end-effector deltas.

    Args:
        sim: the world.
        workspace: ((xmin, ymin, zmin), (xmax, ymax, zmax)) bounds of the end-effector target, m.
        visual: "gripper" (fast, default) or "full" (every link's mesh).
    """

    name = "robot"

    def __init__(self, sim: Sim, workspace: tuple[tuple[float, ...], tuple[float, ...]],
                 visual: str = "gripper") -> None:
        self.sim = sim
        self.workspace = (np.asarray(workspace[0]), np.asarray(workspace[1]))
        sim.load_urdf(self.name, panda_urdf(visual), fixed=True,
                      flags=pybullet.URDF_USE_INERTIA_FROM_FILE)
        self.lower, self.upper = sim.joint_limits(self.name, ARM_JOINTS)
        self.gripper_force = 50.0
        for link in (9, 10):
            # Rubber-like finger pads.
            sim.set_dynamics(self.name, link, lateralFriction=1.5, spinningFriction=0.003)
        for i, color in ((-1, (0.85, 0.85, 0.85, 1)), (8, (0.9, 0.9, 0.9, 1)),
                         (9, (0.25, 0.25, 0.25, 1)), (10, (0.25, 0.25, 0.25, 1))):
            if visual == "gripper" and i in (8, 9, 10):
                sim.set_color(self.name, color, link=i)

    # --------------------------------------------------------------------------- state
    def ee_pose(self) -> tuple[np.ndarray, float]:
        """End-effector position (x, y, z) in the base frame, m, and yaw, rad."""
        pos, orn = self.sim.link_pose(self.name, EE_LINK)
        m = np.asarray(pybullet.getMatrixFromQuaternion(orn)).reshape(3, 3)
        return pos, math.atan2(m[1, 0], m[0, 0])

    def opening(self) -> float:
        """Distance between the fingers, m."""
        return float(self.sim.joint_positions(self.name, FINGER_JOINTS).sum())

    def proprio(self) -> np.ndarray:
        """float32 (5,): x, y, z (m, base frame), yaw (rad), gripper opening (m)."""
        pos, yaw = self.ee_pose()
        return np.array([pos[0], pos[1], pos[2], yaw, self.opening()], dtype=np.float32)

    # -------------------------------------------------------------------------- control
    def reset(self, position: np.ndarray, yaw: float, opening: float = MAX_OPENING) -> None:
        """Teleport to an end-effector pose (IK iterated from the rest pose), at rest."""
        self.sim.reset_joints(self.name, ARM_JOINTS, REST_POSE)
        for _ in range(4):
            q = self._ik(position, yaw)
            self.sim.reset_joints(self.name, ARM_JOINTS, q)
        self.sim.reset_joints(self.name, FINGER_JOINTS, (opening / 2, opening / 2))
        self.hold(position, yaw, opening)

    def _ik(self, position: np.ndarray, yaw: float) -> np.ndarray:
        q = self.sim.inverse_kinematics(self.name, EE_LINK, position, yaw_quaternion(yaw),
                                        list(self.lower) + [0, 0], list(self.upper) + [0.04, 0.04],
                                        list(REST_POSE) + [0.02, 0.02])
        return q[:7]

    def clip_target(self, position: np.ndarray, yaw: float) -> tuple[np.ndarray, float]:
        return (np.clip(position, self.workspace[0], self.workspace[1]),
                float(np.clip(yaw, *YAW_LIMITS)))

    def hold(self, position: np.ndarray, yaw: float, opening: float) -> None:
        """Set motor targets for an end-effector pose and a gripper opening (m)."""
        position, yaw = self.clip_target(position, yaw)
        q = self._ik(position, yaw)
        self.sim.drive_joints(self.name, ARM_JOINTS, q, ARM_FORCES)
        half = float(np.clip(opening, 0.0, MAX_OPENING)) / 2
        self.sim.drive_joints(self.name, FINGER_JOINTS, (half, half),
                              (self.gripper_force, self.gripper_force))

    def set_joint_damping(self, damping: float) -> None:
        for j in ARM_JOINTS:
            self.sim.set_dynamics(self.name, j, jointDamping=damping)

    def finger_links(self) -> tuple[int, int]:
        return FINGER_JOINTS
