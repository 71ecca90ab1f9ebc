"""Safety between a policy and an arm, in one place every transport (ROS 2, rosbridge) shares.

``SafetyGate`` turns a policy action into the command that is actually sent, and decides when to send
zero instead:

- **velocity clamps**: the action (per-step deltas, ``policy.json``'s ``action_scale`` x
  ``control_hz``) becomes a twist in m/s and rad/s (the MoveIt Servo ``delta_twist_cmds`` convention
  with ``speed_units``), clamped to ``max_linear_speed`` / ``max_angular_speed`` (direction kept);
- **workspace clamps**: a velocity component that would carry the end effector out of the box
  ``workspace_low`` .. ``workspace_high`` (m, base frame) is zeroed at the boundary;
- **stale-image watchdog**: no valid image for ``stale_after_s`` -> zero twist;
- **emergency stop**: latched until ``reset_estop()``; zero twist, gripper left as it is;
- **maximum episode time**: zero twist after ``max_episode_s``.

``check_image`` rejects malformed or wrongly-sized images before they can reach the policy. Time is
passed in (seconds, any monotonic clock), so the gate is deterministic and testable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SafetyConfig:
    """Limits (units in the names; positions in the robot base frame)."""

    max_linear_speed: float = 0.25      # m/s
    max_angular_speed: float = 1.0      # rad/s
    workspace_low: tuple[float, float, float] = (0.30, -0.30, 0.005)   # m
    workspace_high: tuple[float, float, float] = (0.80, 0.30, 0.45)    # m
    stale_after_s: float | None = None  # s without a valid image before the watchdog zeroes the twist
    #                                     (None: 1.5 control periods)
    max_episode_s: float = 60.0         # s

    def __post_init__(self) -> None:
        # Upper bounds: a typo (50 m/s, a 30 s watchdog) must not pass as a limit.
        for name, top in (("max_linear_speed", 2.0), ("max_angular_speed", 2 * math.pi), ("stale_after_s", 2.0),
                          ("max_episode_s", 24 * 3600.0)):
            value = getattr(self, name)
            if value is None and name == "stale_after_s":
                continue
            if not (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
                    and 0 < value <= top):
                raise ValueError(f"safety.{name}: must be a number in (0, {top:g}], got {value!r}")
        try:
            lo, hi = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        except (TypeError, ValueError):
            raise ValueError(f"safety.workspace: need numbers, got {self.workspace_low} .. {self.workspace_high}") \
                from None
        finite = np.isfinite(lo).all() and np.isfinite(hi).all()
        if lo.shape != (3,) or hi.shape != (3,) or not (finite and (lo < hi).all()):
            raise ValueError(f"safety.workspace: need low < high on x, y, z, got {self.workspace_low} .. "
                             f"{self.workspace_high}")
        self.workspace_low, self.workspace_high = tuple(lo.tolist()), tuple(hi.tolist())


@dataclass
class Command:
    """What to send: twist (m/s, rad/s, base frame), gripper command in [-1, 1] (target opening
    (g + 1) / 2 x the gripper's maximum opening, as in training: +1 open, -1 closed; None = leave it as
    it is), and why it differs from the policy's wish (empty when it does not)."""

    linear: np.ndarray
    angular: np.ndarray
    gripper: float | None
    reasons: list[str] = field(default_factory=list)

    @property
    def is_zero(self) -> bool:
        return not (self.linear.any() or self.angular.any())


def check_image(image, width: int | None = None, height: int | None = None,
                sizes: list[tuple[int, int]] | None = None) -> str | None:
    """None if ``image`` is a usable uint8 (H, W, 3) RGB frame of the expected size (``width`` x
    ``height``, or one of ``sizes`` as (width, height)), else why not."""
    if not isinstance(image, np.ndarray):
        return f"not an array ({type(image).__name__})"
    if image.dtype != np.uint8:
        return f"dtype {image.dtype}, expected uint8"
    if image.ndim != 3 or image.shape[2] != 3:
        return f"shape {image.shape}, expected (H, W, 3)"
    h, w = image.shape[:2]
    if (width is not None and w != width) or (height is not None and h != height):
        return f"size {w}x{h}, expected {width}x{height}"
    if sizes and (w, h) not in sizes:
        return f"size {w}x{h}, expected one of " + ", ".join(f"{sw}x{sh}" for sw, sh in sizes)
    if h < 8 or w < 8:
        return f"size {w}x{h} is too small"
    return None


class SafetyGate:
    """Args: config: limits; max_translation / max_rotation: the action scale (m, rad per step) and
    control_hz: the control rate, all from ``policy.json``."""

    def __init__(self, config: SafetyConfig, max_translation: float, max_rotation: float, control_hz: float) -> None:
        self.config = config
        self.control_hz = float(control_hz)
        self.step_to_speed = (float(max_translation) * control_hz, float(max_rotation) * control_hz)
        self.stale_after_s = config.stale_after_s if config.stale_after_s is not None else 1.5 / control_hz
        self.last_image: float | None = None
        self.started: float | None = None
        self.estopped = False

    @classmethod
    def from_spec(cls, config: SafetyConfig, spec: dict) -> SafetyGate:
        scale = spec["action_scale"]
        return cls(config, scale["max_translation_m"], scale["max_rotation_rad"], float(spec["control_hz"]))

    # ------------------------------------------------------------------ events
    def image_received(self, now: float) -> None:
        """A *valid* image arrived at ``now`` (s)."""
        self.last_image = now
        if self.started is None:
            self.started = now

    def estop(self, engaged: bool = True) -> None:
        """Engage (latched) the emergency stop; ``estop(False)`` does not release it: ``reset_estop`` does."""
        self.estopped = self.estopped or bool(engaged)

    def reset_estop(self) -> None:
        self.estopped = False

    def new_episode(self) -> None:
        """Restart the episode clock (at the next valid image)."""
        self.started = None

    # ------------------------------------------------------------------ the command
    def stop_reasons(self, now: float) -> list[str]:
        """Why the arm must not move at ``now`` (empty: it may)."""
        reasons = []
        if self.estopped:
            reasons.append("emergency stop")
        if self.last_image is None:
            reasons.append("no image yet")
        elif now - self.last_image > self.stale_after_s:
            reasons.append(f"stale image ({now - self.last_image:.3f} s old)")
        if self.started is not None and now - self.started > self.config.max_episode_s:
            reasons.append(f"episode time over {self.config.max_episode_s:.0f} s")
        return reasons

    def zero(self, reasons: list[str]) -> Command:
        return Command(np.zeros(3), np.zeros(3), None, reasons)

    def command(self, action: np.ndarray, ee_position: np.ndarray, now: float,
                horizon_s: float | None = None) -> Command:
        """The command for policy ``action`` (5,) in [-1, 1] with the end effector at ``ee_position``
        (3,) m at time ``now`` (s). ``horizon_s``: how long this command may act before the next check,
        plus the age of ``ee_position`` (default: one control period); no velocity component may carry
        the hand past the workspace within it."""
        reasons = self.stop_reasons(now)
        if reasons:
            return self.zero(reasons)
        action = np.asarray(action, dtype=float)
        if action.shape != (5,) or not np.isfinite(action).all():
            return self.zero([f"bad action {action.tolist()}"])
        out: list[str] = []
        if np.abs(action).max() > 1.0:
            out.append("action clipped to [-1, 1]")
        action = np.clip(action, -1.0, 1.0)
        linear = action[:3] * self.step_to_speed[0]
        angular = np.array([0.0, 0.0, action[3] * self.step_to_speed[1]])
        speed = float(np.linalg.norm(linear))
        if speed > self.config.max_linear_speed:
            linear *= self.config.max_linear_speed / speed
            out.append(f"linear speed {speed:.3f} m/s clamped")
        if abs(angular[2]) > self.config.max_angular_speed:
            angular[2] = math.copysign(self.config.max_angular_speed, angular[2])
            out.append("angular speed clamped")
        pos = np.asarray(ee_position, dtype=float)
        lo, hi = np.asarray(self.config.workspace_low, float), np.asarray(self.config.workspace_high, float)
        # Look ahead: the command acts for up to ``horizon`` before the next check, from a position
        # that may itself be that old, so each component is limited to what reaches the wall, not past it.
        horizon = float(horizon_s) if horizon_s is not None else 1.0 / self.control_hz
        top = np.maximum(hi - pos, 0.0) / horizon
        bottom = np.minimum(lo - pos, 0.0) / horizon
        limited = np.clip(linear, bottom, top)
        hit = np.flatnonzero(np.abs(limited - linear) > 1e-12)
        if hit.size:
            out.append("workspace boundary on " + ", ".join("xyz"[i] for i in hit))
        return Command(limited, angular, float(action[4]), out)
