"""A privileged scripted expert: it sees object poses and may rehearse grasps in the simulator.

The expert is a closed-loop controller aimed at a *grasp*: an object, a grasp height and a gripper
yaw. It moves into a funnel above the grasp point whose height shrinks with the remaining horizontal
and yaw error, closes, and lifts. Which grasp to aim at is chosen by planning with the simulator
itself: save the world, rehearse candidate grasps (without rendering), restore the world, and keep
the first candidate that lifted its object. Rehearsal replays the episode's own control
randomization (noise stream, latency, gain) because the env keeps that state apart from the sensor
stream, so a rehearsed success is what will happen when executed.

The expert works from any state (e.g. states a learning student visits, for DAgger): ``act``
re-plans whenever it has no grasp or its object is gone.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pybullet

from envs.grasp_env import GraspEnv
from envs.robot import MAX_OPENING
from envs.scene import TRAY_FLOOR_Z

HOVER = 0.09        # m above the grasp height to line up before descending
LIFT_Z = 0.25       # m, where the lift phase goes
DRIFT = 0.03        # m off the grasp point at which a later phase gives up and approaches again
KEEP_YAW_MARGIN = 0.02  # m of opening to spare for a grasp at the gripper's current yaw
# The descent funnel: how high above the grasp point the hand may be, as a function of how far off
# it is horizontally (m per m beyond XY_TOL) and in yaw (m per rad beyond YAW_TOL), capped at HOVER.
XY_TOL, FUNNEL_SLOPE = 0.006, 2.5
YAW_TOL, YAW_SLOPE = 0.1, 0.15
# Finger openings (m): below SHUT the fingers closed on nothing; between SHUT and HELD they were
# stopped by something. CLOSE_DZ: m above the grasp height at which to close.
SHUT, HELD = 0.004, MAX_OPENING - 0.01
CLOSE_DZ = 0.008
GAIN = 0.7  # fraction of the remaining error commanded per step (keeps the last steps from overshooting)


@dataclass
class Grasp:
    """An object, a grasp point offset (m, in the object's yaw frame), height z and yaw (rad)."""

    object: str
    offset: np.ndarray
    z: float
    yaw_offset: float


def _object_yaw(quat: np.ndarray) -> float:
    m = np.asarray(pybullet.getMatrixFromQuaternion(quat)).reshape(3, 3)
    return math.atan2(m[1, 0], m[0, 0])


def _width_across(rotation: np.ndarray, extents: np.ndarray, theta: float) -> float:
    """Horizontal width (m) of an object's bounding box (extents in its frame, rotation 3x3 to the
    base frame) measured along the base-frame direction at angle theta: the finger closing axis."""
    d = np.array([math.cos(theta), math.sin(theta), 0.0])
    return float(np.sum(np.abs(rotation.T @ d) * extents))


def _wrap_half_pi(angle: float) -> float:
    """A parallel gripper is symmetric under a half turn: map a yaw into [-pi/2, pi/2)."""
    return (angle + math.pi / 2) % math.pi - math.pi / 2


def grasp_height(low: np.ndarray, high: np.ndarray) -> float:
    """The height (m, base frame) the expert grasps an object at first, from its bounding box
    (low and high corners, m): 2.5 cm below its top (at most 60 % of its height down), and at
    least 1.2 cm above the tray floor."""
    return max(TRAY_FLOOR_Z + 0.012, float(high[2]) - min(0.025, 0.6 * float(high[2] - low[2])))


class ScriptedExpert:
    """Args: env (a GraspEnv or a wrapper of one); plan: rehearse candidates in simulation;
    max_candidates: how many grasps to rehearse at most per plan."""

    def __init__(self, env, plan: bool = True, max_candidates: int = 12) -> None:
        self.env: GraspEnv = env.unwrapped
        self.plan_enabled = plan
        self.max_candidates = max_candidates
        self.grasp: Grasp | None = None
        self.phase = "approach"
        self.planned_success: bool | None = None
        self.rehearsals = 0

    def reset(self) -> None:
        self.grasp = None
        self.phase = "approach"
        self.planned_success = None

    # ------------------------------------------------------------------------ candidates
    def candidates(self) -> list[Grasp]:
        """Grasps to rehearse, best guesses first: the object nearest the gripper (horizontally)
        first, each across the narrowest horizontal direction of its bounding box, then other yaws
        and heights. Nearest-first makes the expert's choice something a student can see in the
        image (where the gripper is relative to the objects), not a hidden preference."""
        env = self.env
        ee, ee_yaw = env.robot.ee_pose()
        out: list[tuple[float, int, Grasp]] = []
        for name, info in env.privileged_state().items():
            pos, quat, ext = info["position"], info["orientation"], info["extents"]
            low, high = env.sim.aabb(name)
            if pos[2] < 0:
                continue
            m = np.asarray(pybullet.getMatrixFromQuaternion(quat)).reshape(3, 3)
            obj_yaw = _object_yaw(quat)
            # Closing directions (angle in the base frame), narrowest first.
            options = sorted((_width_across(m, ext, k * math.pi / 12), k * math.pi / 12) for k in range(12))
            # Keeping the gripper's current yaw comes first when the object fits across it: a
            # rotation the student would have to read off a few pixels is the hardest thing to
            # imitate, and most objects fit the 8 cm opening at many angles (rehearsal checks).
            theta_now = ee_yaw - math.pi / 2
            width_now = _width_across(m, ext, theta_now)
            if width_now <= MAX_OPENING - KEEP_YAW_MARGIN:
                options.insert(0, (width_now, theta_now))
            height = high[2] - low[2]
            z_main = grasp_height(low, high)
            z_low = max(TRAY_FLOOR_Z + 0.01, low[2] + 0.25 * height)
            centre = 0.5 * (low[:2] + high[:2])
            rot = np.array([[math.cos(obj_yaw), math.sin(obj_yaw)], [-math.sin(obj_yaw), math.cos(obj_yaw)]])
            offset = rot @ (centre - pos[:2])
            for rank, (width, theta) in enumerate(options[:4]):
                if width > MAX_OPENING - 0.004:
                    continue
                # Closing axis (sin yaw, -cos yaw) along d  =>  yaw = theta + pi/2.
                yaw_offset = _wrap_half_pi(theta + math.pi / 2 - obj_yaw)
                for z_rank, z in enumerate((z_main, z_low)):
                    # Distance alone orders the objects. (A bonus for taller objects, meant for stacks,
                    # made the expert pass over the nearest object in a third of multi-object scenes
                    # for one ~3 cm further: a choice the student cannot read off the image, so its
                    # estimate averaged the two and aimed between them.) A stack's lower object fails
                    # its rehearsal and the next candidate is taken.
                    score = float(np.linalg.norm(centre - ee[:2])) + 0.02 * rank + 0.03 * z_rank
                    out.append((score, len(out), Grasp(name, offset, z, yaw_offset)))
        out.sort(key=lambda t: (t[0], t[1]))
        return [g for _, _, g in out[: self.max_candidates]]

    # ------------------------------------------------------------------------- planning
    def plan(self) -> Grasp | None:
        """Rehearse candidates in simulation; keep the first that lifts its object."""
        candidates = self.candidates()
        if not candidates:
            return None
        if not self.plan_enabled:
            return candidates[0]
        env = self.env
        snapshot = self._snapshot()
        chosen = None
        try:
            for grasp in candidates:
                self.rehearsals += 1
                if self._rehearse(grasp):
                    chosen = grasp
                    break
                self._restore(snapshot)
        finally:
            self._restore(snapshot)
            env.sim.remove_state(snapshot["state"])
        self.planned_success = chosen is not None
        return chosen or candidates[0]

    def _snapshot(self) -> dict:
        env = self.env
        return {"state": env.sim.save_state(), "rng": copy.deepcopy(env._rng_control.bit_generator.state),
                "actions": copy.deepcopy(env._actions), "steps": env._steps}

    def _restore(self, snap: dict) -> None:
        env = self.env
        env.sim.restore_state(snap["state"])
        env._rng_control.bit_generator.state = copy.deepcopy(snap["rng"])
        env._actions = copy.deepcopy(snap["actions"])
        env._steps = snap["steps"]

    def _rehearse(self, grasp: Grasp) -> bool:
        env = self.env
        saved = (self.grasp, self.phase)
        self.grasp, self.phase = grasp, "approach"
        success = False
        try:
            for _ in range(env.config.max_episode_steps - env._steps):
                env.apply_action(self._control())
                env._steps += 1
                if env.is_success():
                    success = True
                    break
        finally:
            self.grasp, self.phase = saved
        return success

    # -------------------------------------------------------------------------- control
    def act(self, observation=None) -> np.ndarray:
        """The action for the env's current state (the observation is not needed: privileged)."""
        if self.grasp is None or self.grasp.object not in self.env.scene.active or self._student_chose_another():
            self.grasp = self.plan()
            self.phase = "approach"
            if self.grasp is None:
                return np.array([0, 0, 1.0, 0, 1.0], dtype=np.float32)
        return self._control()

    def _student_chose_another(self) -> bool:
        """Someone else is driving (DAgger) and has clearly gone for another object: the gripper is
        within 6 cm of it and at most half as far from it as from the planned one. Re-planning then
        keeps the labels consistent with "grasp the object you are at", which a student can see."""
        ee, _ = self.env.robot.ee_pose()
        point, _ = self._target()
        d_plan = float(np.linalg.norm(ee[:2] - point[:2]))
        for name in self.env.scene.active:
            if name == self.grasp.object:
                continue
            pos, _ = self.env.sim.pose(name)
            d = float(np.linalg.norm(ee[:2] - pos[:2]))
            if pos[2] > 0 and d < 0.06 and d < 0.5 * d_plan and ee[2] < pos[2] + 0.15:
                return True
        return False

    def _target(self) -> tuple[np.ndarray, float]:
        g = self.grasp
        pos, quat = self.env.sim.pose(g.object)
        yaw = _object_yaw(quat)
        c, s = math.cos(yaw), math.sin(yaw)
        xy = pos[:2] + np.array([c * g.offset[0] - s * g.offset[1], s * g.offset[0] + c * g.offset[1]])
        return np.array([xy[0], xy[1], g.z]), _wrap_half_pi(yaw + g.yaw_offset)

    def target_labels(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Privileged labels for the current grasp: target object (x, y, z, yaw) and grasp pose
        (x, y, z, yaw), base frame, m and rad; None before a plan."""
        if self.grasp is None or self.grasp.object not in self.env.scene.active:
            return None
        pos, quat = self.env.sim.pose(self.grasp.object)
        point, yaw = self._target()
        return (np.array([*pos, _object_yaw(quat)], dtype=np.float32),
                np.array([*point, yaw], dtype=np.float32))

    def _control(self) -> np.ndarray:
        """The action for the current state. The phase is read from the state (where the hand is,
        what the fingers touch), not remembered, so the same state always gets the same label
        whoever drove the arm there (DAgger: the student acts, the expert labels)."""
        env = self.env
        ee, ee_yaw = env.robot.ee_pose()
        cfg = env.config
        grasp_point, grasp_yaw = self._target()
        opening = env.robot.opening()
        off_xy = float(np.linalg.norm(ee[:2] - grasp_point[:2]))
        dz = float(ee[2] - grasp_point[2])
        touching = [env.sim.in_contact("robot", self.grasp.object, link) for link in env.robot.finger_links()]
        yaw_err = abs(grasp_yaw - ee_yaw)  # as dyaw below: the rotation still to do
        gripper = 1.0
        if all(touching) or (any(touching) and dz > 0.015 and opening < HELD):
            phase = "lift"
            target, gripper = np.array([ee[0], ee[1], LIFT_Z]), -1.0
        elif off_xy <= DRIFT and dz < CLOSE_DZ and opening > SHUT:
            # At the grasp point: close (unless the fingers already closed on nothing: a miss).
            phase = "close"
            target, gripper = grasp_point, -1.0
        else:
            # A funnel rather than approach-then-descend phases: the height allowed above the
            # grasp point grows smoothly with the horizontal and yaw errors, so the label is a
            # continuous function of the state. (Phase switches made the same-looking states get
            # "up" and "down" labels, which a regressing student averages into hovering.)
            allowed = min(HOVER, FUNNEL_SLOPE * max(0.0, off_xy - XY_TOL) + YAW_SLOPE * max(0.0, yaw_err - YAW_TOL))
            phase = "approach" if allowed >= HOVER else "descend"
            target = grasp_point + np.array([0.0, 0.0, allowed])
        self.phase = phase
        delta = (target - ee) / cfg.max_translation
        dyaw = (grasp_yaw - ee_yaw) / cfg.max_rotation
        if phase in ("close", "lift"):
            dyaw = 0.0
        action = np.concatenate([np.clip(GAIN * delta, -1, 1), [np.clip(GAIN * dyaw, -1, 1)], [gripper]])
        return action.astype(np.float32)


def run_episode(env, expert: ScriptedExpert, seed: int | None = None) -> tuple[bool, int]:
    """Roll out one expert episode; returns (success, steps)."""
    env.reset(seed=seed)
    expert.reset()
    steps = 0
    while True:
        _, _, terminated, truncated, info = env.step(expert.act())
        steps += 1
        if terminated or truncated:
            return bool(info["is_success"]), steps
