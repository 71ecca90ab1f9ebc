"""Where a servo policy's grasp estimate goes wrong: its horizontal offset estimate (grasp point -
hand) against the scripted expert's, in the states a driver visits.

A "servo" ``GraspPolicy`` acts on its grasp head's estimate of where the grasp is relative to the
hand (``policies.policy``). Its closed-loop success says *that* it misses, not *why*; this module
records, step by step, the estimate next to the expert's grasp (the label it was trained on) and
bins the error by how far the grasp is from the hand and how high the hand is above it.

The telling figure is the **gain**: the median of the estimate's component along the true offset
divided by the true offset's length. 1 = unbiased; 0 = the estimate says "right here" however far
the grasp is - the hand then descends and closes beside the object (``scripts/bench_servo.py``
says how little steady error the control law tolerates).

Rows are float arrays (N, 7) with the columns of ``COLUMNS``: episode index, height of the hand
above the grasp (m), true offset x, y (m, base frame) and estimated offset x, y (m), success of
the episode (0/1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from policies.encoders import images_to_tensor
from policies.policy import GRASP_SCALE, GraspPolicy

COLUMNS = ("episode", "height", "true_x", "true_y", "est_x", "est_y", "success")
DRIVERS = ("student", "expert")
# Bins of the true horizontal offset's length (m) and the height (m, hand above the grasp) below
# which a state counts as "low": the hand is at the object, where the expert only ever is aligned.
# The last bin is open (its upper end is reported as None).
OFFSET_BINS = (0.0, 0.01, 0.02, 0.04, 0.08, float("inf"))
LOW = 0.05


def estimate_rows(env, expert, policy: GraspPolicy, seeds: list[int], drive: str = "student",
                  on_episode=None) -> np.ndarray:
    """Run one episode per seed and record every step where the expert has a grasp (rows above).

    env: a ``PandaGrasp`` env with the policy's image size; expert: a ``ScriptedExpert`` on it
    (it labels every state, and acts when ``drive="expert"``); drive: who moves the hand -
    "student" (the policy: the states it really meets) or "expert" (the states it was shown).
    on_episode(k, success), optional: called after each episode (progress)."""
    if drive not in DRIVERS:
        raise ValueError(f"drive: must be one of {DRIVERS}, got {drive!r}")
    rows: list[list[float]] = []
    was_training = policy.training
    policy.eval()  # BatchNorm on running statistics, as the policy acts (a batch of one otherwise)
    try:
        _record(env, expert, policy, seeds, drive, on_episode, rows)
    finally:
        policy.train(was_training)
    return np.asarray(rows, np.float64).reshape(-1, len(COLUMNS))


def _record(env, expert, policy: GraspPolicy, seeds: list[int], drive: str, on_episode, rows: list) -> None:
    """The episodes of ``estimate_rows``, appending to ``rows`` (the policy already in eval mode)."""
    for k, seed in enumerate(seeds):
        obs, _ = env.reset(seed=int(seed))
        expert.reset()
        start = len(rows)
        while True:
            label = expert.act()
            targets = expert.target_labels()
            proprio = np.asarray(obs["proprio"], np.float32)
            if targets is not None:
                grasp = np.asarray(targets[1], np.float64)
                estimate = policy.grasp_estimate(images_to_tensor(obs["image"][None]),
                                                 torch.as_tensor(proprio[None]))[0, :2].numpy() * GRASP_SCALE
                true = grasp[:2] - proprio[:2]
                rows.append([k, proprio[2] - grasp[2], *true, *estimate, 0.0])
            action = label if drive == "expert" else policy.act(obs["image"], obs["proprio"])
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        success = bool(info["is_success"])
        for row in rows[start:]:
            row[6] = float(success)
        if on_episode is not None:
            on_episode(k, success)


def _along(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Length of the true offset and the estimate's component along it (m), per row."""
    dist = np.linalg.norm(rows[:, 2:4], axis=1)
    return dist, (rows[:, 4:6] * rows[:, 2:4]).sum(axis=1) / np.maximum(dist, 1e-9)


def error_table(rows: np.ndarray, bins: tuple[float, ...] = OFFSET_BINS, low: float = LOW) -> list[dict]:
    """Rows (N, 7) -> one summary per (height class, offset bin) with at least one state:
    states, median true offset, median |estimate|, median error (all cm) and the gain (module doc)."""
    rows = np.asarray(rows, np.float64).reshape(-1, len(COLUMNS))
    true, est = rows[:, 2:4], rows[:, 4:6]
    dist, along = _along(rows)
    error = np.linalg.norm(est - true, axis=1)
    out = []
    for name, height in (("low", rows[:, 1] < low), ("high", rows[:, 1] >= low)):
        for lo, hi in zip(bins[:-1], bins[1:], strict=True):
            m = height & (dist >= lo) & (dist < hi)
            if not m.any():
                continue
            out.append({"height": name, "offset_cm": [100 * lo, 100 * hi if np.isfinite(hi) else None],
                        "states": int(m.sum()),
                        "true_cm": round(100 * float(np.median(dist[m])), 2),
                        "estimate_cm": round(100 * float(np.median(np.linalg.norm(est[m], axis=1))), 2),
                        "error_cm": round(100 * float(np.median(error[m])), 2),
                        "gain": round(float(np.median(along[m] / np.maximum(dist[m], 1e-9))), 2)})
    return out


def plot_rows(rows: np.ndarray, path, title: str = "") -> None:
    """Estimate along the true offset against the true offset's length (cm), low and high states."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.asarray(rows, np.float64).reshape(-1, len(COLUMNS))
    dist, along = _along(rows)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharex=True, sharey=True)
    top = 100 * max(float(dist.max(initial=0.0)), 0.02)
    for ax, (name, m) in zip(axes, ((f"hand low (< {100 * LOW:.0f} cm above the grasp)", rows[:, 1] < LOW),
                                    ("hand high", rows[:, 1] >= LOW)), strict=True):
        ax.scatter(100 * dist[m], 100 * along[m], s=5, alpha=0.35, c=np.where(rows[m, 6] > 0, "tab:green", "tab:red"))
        ax.plot([0, top], [0, top], "k--", lw=1, label="perfect estimate")
        ax.set_title(f"{name}: {int(m.sum())} states", fontsize=9)
        ax.set_xlabel("true offset grasp - hand, cm")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("estimate along the true offset, cm")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title + "  (green: episode grasped, red: missed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def result_dir(run: str | Path, name: str, domain: str = "sim") -> Path:
    """Where a diagnosis script writes by default: ``RUN/<name>``, with ``-<domain>`` appended
    outside the simulator so a proxy-real result never replaces the sim one."""
    return Path(run) / (name if domain == "sim" else f"{name}-{domain}")


# ------------------------------------------------------------------------ oracle attribution
# What limits the student's closed-loop success: the same episodes (paired seeds) with parts of
# what it acts on replaced by the simulator's truth. "xy", "yaw", "height": the components of its
# grasp estimate (``policies.policy.grasp_targets``); "holding": whether the fingers hold the
# object (the expert's finger contacts) instead of the action head's gripper logit, which the
# servo law reads with the opening to decide when to lift. A row is a "+"-joined set of parts;
# "" is the student as it is deployed, "expert" the scripted expert acting itself.
ORACLE_PARTS = ("xy", "yaw", "height", "holding")
ORACLE_ROWS = ("", "xy", "yaw", "height", "holding", "xy+yaw+height", "xy+yaw+height+holding", "expert")
_SLICES = {"xy": slice(0, 2), "height": slice(2, 3), "yaw": slice(3, 5)}


def parse_oracle_row(row: str) -> frozenset[str]:
    """A row name ("" / "xy+yaw" / "expert") -> its set of parts; ValueError naming the bad part."""
    if row == "expert":
        return frozenset({"expert"})
    parts = frozenset(p for p in row.split("+") if p)
    unknown = parts - set(ORACLE_PARTS)
    if unknown:
        raise ValueError(f"oracle row {row!r}: unknown part(s) {sorted(unknown)}; "
                         f"parts are {', '.join(ORACLE_PARTS)} joined by '+', or 'expert'")
    return parts


@torch.no_grad()
def oracle_action(policy: GraspPolicy, expert, image: np.ndarray, proprio: np.ndarray,
                  parts: frozenset[str]) -> np.ndarray:
    """The policy's action on one observation with ``parts`` taken from the expert (which must
    have labelled this state: ``expert.act()`` first). Without parts it equals ``policy.act``."""
    from policies.policy import grasp_targets, servo_action

    p = torch.as_tensor(np.asarray(proprio, np.float32)[None])
    grasp, _, logit = policy.servo_inputs(images_to_tensor(image[None]), p)
    labels = expert.target_labels()
    if labels is not None:
        true = grasp_targets(torch.as_tensor(labels[1][None]), p)
        for part in parts & set(_SLICES):
            grasp[:, _SLICES[part]] = true[:, _SLICES[part]]
    if "holding" in parts:
        # The expert lifts exactly when its fingers touch the object (envs.expert).
        logit = torch.tensor([-10.0 if expert.phase == "lift" else 10.0])
    return servo_action(grasp, p, logit, policy.servo)[0].numpy()


def oracle_successes(env, expert, policy: GraspPolicy, seeds: list[int], row: str, on_episode=None) -> list[bool]:
    """One episode per seed with ``row``'s parts from the truth (module comment above); successes."""
    parts = parse_oracle_row(row)
    if policy.control != "servo" and parts - {"expert"}:
        raise ValueError("oracle parts replace a servo policy's grasp estimate; this policy acts directly")
    was_training = policy.training
    policy.eval()
    out = []
    try:
        for k, seed in enumerate(seeds):
            obs, _ = env.reset(seed=int(seed))
            expert.reset()
            while True:
                label = expert.act()  # labels the state (and plans) whoever acts
                if "expert" in parts:
                    action = label
                elif parts:
                    action = oracle_action(policy, expert, obs["image"], obs["proprio"], parts)
                else:
                    action = policy.act(obs["image"], obs["proprio"])
                obs, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
            out.append(bool(info["is_success"]))
            if on_episode is not None:
                on_episode(k, out[-1])
    finally:
        policy.train(was_training)
    return out


def plot_oracle(result: dict, path, title: str = "") -> None:
    """Horizontal bars: success (with the 95 % interval) per oracle row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [r["label"] for r in rows]
    rates = np.array([100 * r["success_rate"] for r in rows])
    lo = rates - np.array([100 * r["ci95"][0] for r in rows])
    hi = np.array([100 * r["ci95"][1] for r in rows]) - rates
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    colors = ["tab:gray" if r["row"] == "expert" else "tab:blue" if r["row"] == "" else "tab:orange" for r in rows]
    ax.barh(y, rates, xerr=[lo, hi], color=colors, capsize=3)
    for yy, rate in zip(y, rates, strict=True):
        ax.text(1, yy, f"{rate:.0f} %", va="center", fontsize=8, color="white")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"closed-loop success, % ({rows[0]['episodes']} paired episodes, 95 % interval)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def oracle_label(row: str) -> str:
    if row == "expert":
        return "scripted expert (privileged)"
    if not row:
        return "student as deployed"
    return "student + true " + " + ".join(row.split("+"))
