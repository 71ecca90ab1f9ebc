"""Pictures of a run: the learning curve (``learning_curve.png``) and a rollout GIF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def learning_curve_png(run_dir: str | Path) -> Path:
    """Losses of every training stage against cumulative gradient steps, and rollout success of the
    data-collection stages (expert, then the student during each DAgger round) with the final
    evaluation on held-out objects (95% interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    curve = json.loads((run_dir / "curve.json").read_text()) if (run_dir / "curve.json").exists() else []
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
    fig, (ax_loss, ax_succ) = plt.subplots(1, 2, figsize=(11, 4))
    # One colour per loss across all stages (a legend entry per loss), stages split by grey lines.
    from policies.imitation import LOSSES

    offset, boundaries, labelled = 0, [], set()
    for stage in dict.fromkeys(r["stage"] for r in curve):
        rows = [r for r in curve if r["stage"] == stage and "total" in r]
        if not rows:
            continue
        steps = np.array([r["step"] for r in rows]) + offset
        for k, key in enumerate(LOSSES):
            if key in rows[0]:
                ax_loss.plot(steps, [r[key] for r in rows], color=f"C{k}", lw=1.2,
                             label=None if key in labelled else key)
                labelled.add(key)
        boundaries.append((offset, int(steps[-1]), stage))
        offset = int(steps[-1])
    for start, end, stage in boundaries:
        if start:
            ax_loss.axvline(start, color="grey", lw=0.5)
        ax_loss.text((start + end) / 2, 1.01, stage, transform=ax_loss.get_xaxis_transform(), ha="center",
                     va="bottom", fontsize=7)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("gradient step (all stages)")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training losses", pad=14)
    ax_loss.legend(fontsize=7)
    names, values = [], []
    for r in curve:
        if "rollout_success" in r:
            names.append(r["stage"])
            values.append(r["rollout_success"])
    ax_succ.plot(range(len(values)), values, "o-", label="rollout success while collecting")
    held = metrics.get("eval", {}).get("heldout_objects")
    if held:
        x = len(values)
        lo, hi = held["ci95"]
        ax_succ.errorbar([x], [held["success_rate"]], yerr=[[held["success_rate"] - lo], [hi - held["success_rate"]]],
                         fmt="s", color="C3", capsize=4, label=f"final, held-out objects (n={held['episodes']})")
        names.append("eval")
    ax_succ.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    ax_succ.set_ylim(0, 1.02)
    ax_succ.set_ylabel("grasp success")
    ax_succ.set_title("success: expert, student (DAgger), final")
    ax_succ.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = run_dir / "learning_curve.png"
    tmp = run_dir / ".learning_curve.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out


def rollout_gif(policy, train_config: dict, out: str | Path, episodes: int = 3, seed: int = 2000,
                size: int = 192) -> Path:
    """GIF of ``episodes`` held-out-object episodes: a clean third-person view (left) and the 64x64
    image the policy acted on, scaled up (right), with success marked in the last frames."""
    import cv2
    import gymnasium as gym
    import imageio.v2 as imageio

    import envs  # noqa: F401
    from policies.train import eval_env_kwargs

    env = gym.make("PandaGrasp-v0", render_mode="rgb_array", render_size=size, disable_env_checker=True,
                   **eval_env_kwargs(train_config, "heldout"))
    frames = []
    try:
        for k in range(episodes):
            obs, _ = env.reset(seed=seed + k)
            done, success = False, False
            while not done:
                view = env.render()
                small = cv2.resize(obs["image"], (size, size), interpolation=cv2.INTER_NEAREST)
                frames.append(np.concatenate([view, small], axis=1))
                obs, _, term, trunc, info = env.step(policy.act(obs["image"], obs["proprio"]))
                done, success = term or trunc, bool(info["is_success"])
            last = np.concatenate([env.render(), cv2.resize(obs["image"], (size, size),
                                                            interpolation=cv2.INTER_NEAREST)], axis=1)
            color = (40, 200, 40) if success else (220, 40, 40)
            marked = cv2.rectangle(last.copy(), (2, 2), (last.shape[1] - 3, last.shape[0] - 3), color, 4)
            marked = cv2.putText(marked, "success" if success else "failure", (8, 22), cv2.FONT_HERSHEY_SIMPLEX,
                                 0.6, color, 2)
            frames += [marked] * 5
    finally:
        env.close()
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp.gif")
    imageio.mimsave(tmp, frames, duration=0.1, loop=0)
    tmp.replace(out)
    return out
