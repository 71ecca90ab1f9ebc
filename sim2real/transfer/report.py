"""The adaptation report: ``report.md`` (tables, warnings) and ``report.png`` (strategy comparison and
data-efficiency curve side by side)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim2real.transfer.adapt import CHOICE_LEVEL, CHOICE_MIN_EPISODES


def write_png(path: Path, results: dict[str, dict], efficiency: dict[str, Any] | None, chosen: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    # The selection criterion (grasp loss: offset, height and yaw together) is what both panels show.
    names = list(results)
    val = [results[n]["val"].get("grasp_loss", float("nan")) for n in names]
    sim = [results[n].get("sim", {}).get("grasp_loss", float("nan")) for n in names]
    x = range(len(names))
    ax = axes[0]
    bars = ax.bar([i - 0.2 for i in x], val, 0.4, label="held-out real split")
    ax.bar([i + 0.2 for i in x], sim, 0.4, label="simulation (forgetting)", color="#bbbbbb")
    bars[names.index(chosen)].set_color("#d62728")
    ax.set_xticks(list(x), names, rotation=35, ha="right")
    ax.set_ylabel("grasp-head loss (lower is better)")
    ax.set_title(f"Strategies (chosen: {chosen}, red)")
    ax.legend(fontsize=8)
    ax = axes[1]
    if efficiency:
        for name, values in efficiency["grasp_loss"].items():
            ax.plot(efficiency["budgets"], values, marker="o", label=name)
        if "zero_shot" in results and results["zero_shot"]["val"].get("rows"):
            ax.axhline(results["zero_shot"]["val"]["grasp_loss"], color="k", ls="--", lw=1, label="zero-shot")
        ax.set_xscale("log")
        ax.set_xticks(efficiency["budgets"], [str(b) for b in efficiency["budgets"]])
        ax.minorticks_off()
        ax.set_xlabel("labelled real training rows")
        ax.set_ylabel("grasp-head loss on held-out real rows")
        ax.set_title("Data efficiency")
        ax.legend(fontsize=8)
    else:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(path: Path, summary: dict[str, Any]) -> None:
    """``summary``: source run, data, split sizes, results, chosen, efficiency, warnings, camera check."""
    results, chosen = summary["results"], summary["chosen"]
    lines = ["# Adaptation report", "",
             f"- sim run: `{summary['source_run']}`",
             f"- real data: `{summary['data']}` ({summary['format']}): {summary['rows']} images, "
             f"{summary['labelled']} labelled; training rows {summary['train_rows']}, held-out rows "
             f"{summary['val_rows']} (split by episode)",
             f"- chosen strategy: **{chosen}** ({summary['choice']})",
             f"- wall time: {summary['wall_time_s']:.0f} s", ""]
    for w in summary.get("warnings", []):
        lines += [f"> **WARNING** {w}", ""]
    lines += ["## Strategies on the held-out real split", "",
              "| strategy | grasp error, cm (median / mean) | yaw error, deg | grasp loss | sim error after, cm "
              "| time, s |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        v, s = r["val"], r.get("sim")
        sim = f"{s['xy_err_cm']:.2f}" if s else "n/a"
        mark = " **(chosen)**" if name == chosen else ""
        if v.get("rows"):
            scores = (f"{v['xy_err_cm']:.2f} / {v['xy_err_cm_mean']:.2f} | {v['yaw_err_deg']:.1f} | "
                      f"{v['grasp_loss']:.4f}")
        else:
            scores = "n/a | n/a | n/a"
        lines.append(f"| {name}{mark} | {scores} | {sim} | {r['seconds']:.0f} |")
    lines += ["", "Grasp error: distance between where the grasp head says the grasp is (relative to the hand) "
              "and the executed grasp, on held-out real rows. Grasp loss: the training objective on the same "
              "rows (offset, height and yaw together), which `--strategy auto` minimizes (a strategy replaces "
              "zero-shot only when its gain is beyond the split's noise: a sign-flip test over held-out episodes, "
              f"p < {CHOICE_LEVEL}, which takes at least {CHOICE_MIN_EPISODES} of them). Sim error "
              "after: the grasp error on simulated rows (catastrophic forgetting shows as a rise over zero-shot's). "
              "The held-out split is small: differences of a few tenths of a centimetre are noise; closed-loop "
              "success (`scripts/evaluate.py RUN --domain proxy_real`, or on the robot) decides.", ""]
    eff = summary.get("efficiency")
    if eff:
        lines += ["## Data efficiency (held-out grasp loss / median grasp error in cm, by labelled training rows)",
                  "", "| strategy | " + " | ".join(str(b) for b in eff["budgets"]) + " |",
                  "|---|" + "---|" * len(eff["budgets"])]
        for name, errs in eff["xy_err_cm"].items():
            cells = [f"{loss:.4f} / {e:.2f}" for loss, e in zip(eff["grasp_loss"][name], errs, strict=True)]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    skipped = summary.get("skipped") or []
    if skipped:
        lines += [f"## Skipped input ({len(skipped)}, --skip-bad)", ""] + [f"- {m}" for m in skipped] + [""]
    cam = summary.get("camera_check")
    if cam:
        lines += ["## Camera", "", cam, ""]
    tune = summary.get("sim_tune")
    if tune:
        collected = ", ".join(f"{m} {c.get('episodes', c.get('layouts'))}"
                              + (f" ({c['success_rate']:.0%} success)" if "success_rate" in c else "")
                              for m, c in tune["collected"].items())
        lines += ["## Simulation fine-tuning for the real calibration", "",
                  f"Before any real label was used, the policy was fine-tuned in simulation seen through "
                  f"`{tune['camera_info']}` ({collected}; {tune['rows']} rows, {tune['seconds']:.0f} s)"
                  + (f"; its worlds' surfaces wore {tt['textures']} patches cut from {tt['from_images']} real "
                     f"images outside the held-out episodes" if (tt := tune.get("target_textures")) else "")
                  + (f"; {st['probability']:.0%} of its training images took on the style of {st['from_images']} "
                     f"real images (their amplitude spectrum within {st['band']} cycles per image)"
                     if (st := tune.get("style")) else "")
                  + ". The strategies above start from it (zero_shot is it, untouched by real labels)."]
        untuned = (f", {u['xy_err_cm_mean']:.2f} cm for the run's policy before the fine-tuning"
                   if (u := tune.get("untuned_labelled")) else "")
        if draws := tune.get("draws"):
            line = (f"It is the average, weight by weight, of {len(draws)} independent draws of this fine-tuning "
                    f"(each its own worlds, real patches and fit; the rows and collection above are the first "
                    f"draw's, the seconds all {len(draws)} draws').")
            if (avg := tune.get("average")) and avg.get("rows"):
                line += (f" Mean horizontal grasp error on all {avg['rows']} labelled real rows, on which none "
                         f"trains: " + ", ".join(f"{d['xy_err_cm_mean']:.2f}" for d in draws)
                         + f" cm for the draws, {avg['xy_err_cm_mean']:.2f} cm for the average{untuned}.")
            lines.append(line)
        if weight := tune.get("source_weight"):
            line = (f"The run's untuned weights were then mixed back in: every learned weight is {1 - weight:g} x "
                    f"the fine-tuned one + {weight:g} x the untuned one (the new camera's geometry kept; "
                    f"`--sim-tune-source-weight`); on the README's measurements this kept more of the run's skill "
                    f"in the proxy-real domain.")
            if (mixed := tune.get("mixed")) and mixed.get("rows") and (unmixed := tune.get("unmixed")):
                line += (f" Mean horizontal grasp error on all {mixed['rows']} labelled real rows: "
                         f"{unmixed['xy_err_cm_mean']:.2f} cm before the mix, {mixed['xy_err_cm_mean']:.2f} cm after"
                         + ("" if draws else untuned) + ".")  # (with draws, the line above gave it)
            lines.append(line)
        before = tune.get("untuned_val") or {}
        if before.get("rows"):
            lines.append(f"The run's policy before it, on the table's held-out rows: grasp error "
                         f"{before['xy_err_cm']:.2f} / {before['xy_err_cm_mean']:.2f} cm, grasp loss "
                         f"{before['grasp_loss']:.4f}.")
        lines.append("")
    lines += ["![report](report.png)", ""]
    path.write_text("\n".join(lines))
