"""How accurate must a student's grasp estimate be? The servo control law (``servo_action``, what a
"servo" ``GraspPolicy`` runs) driven by the scripted expert's *true* grasp, with a known error
added to its horizontal offset:

    "noise"  drawn afresh every step, N(0, size^2) per axis (m): a jittery estimate;
    "bias"   one direction per episode, ``size`` m long, held for the whole episode: an estimate
             that is consistently off (what a student's is, measured: README, diagnosis).

Everything else comes from the expert: the grasp height and yaw, and the "keep the fingers shut"
signal that the policy's action head learns (the expert's gripper command stands in for its logit).
So the success rate at error 0 is the control law's ceiling, and the curve says how much of it
survives a given perception error.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from policies.policy import GRASP_SCALE, ServoLaw, grasp_targets, servo_action

ERROR_KINDS = ("noise", "bias")


def estimate_error(kind: str, size: float, rng: np.random.Generator) -> Callable[[], np.ndarray]:
    """One episode's error source: a callable giving the (2,) horizontal error in m for each step."""
    if kind not in ERROR_KINDS:
        raise ValueError(f"error kind: must be one of {ERROR_KINDS}, got {kind!r}")
    if not np.isfinite(size) or size < 0:
        raise ValueError(f"error size: must be a non-negative number of metres, got {size!r}")
    if kind == "noise":
        return lambda: size * rng.standard_normal(2)
    angle = rng.uniform(-np.pi, np.pi)
    bias = size * np.array([np.cos(angle), np.sin(angle)])
    return lambda: bias


def servo_episode(env, expert, error: Callable[[], np.ndarray], seed: int | None = None,
                  servo: ServoLaw | None = None) -> tuple[bool, int]:
    """One episode of the servo law on the expert's grasp plus ``error()``; returns (success, steps).

    ``env`` is a ``PandaGrasp`` env (any observation with proprio), ``expert`` a ``ScriptedExpert``
    on it; ``servo``: the law's constants (None: the expert's). Before the expert has a plan (no
    labels) the hand holds still with the fingers open."""
    obs, _ = env.reset(seed=seed)
    expert.reset()
    steps = 0
    while True:
        label = expert.act()
        targets = expert.target_labels()
        proprio = torch.as_tensor(obs["proprio"][None], dtype=torch.float32)
        if targets is None:
            action = np.array([0, 0, 0, 0, 1.0], np.float32)
        else:
            grasp = grasp_targets(torch.as_tensor(targets[1][None]), proprio)
            grasp[0, :2] += torch.as_tensor(error() / GRASP_SCALE, dtype=torch.float32)
            action = servo_action(grasp, proprio, torch.tensor([float(label[4])]), servo)[0].numpy()
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        if terminated or truncated:
            return bool(info["is_success"]), steps
