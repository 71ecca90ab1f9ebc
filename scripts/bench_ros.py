"""Deployment rehearsal benchmark: the policy node and the simulated robot as two processes over real
DDS on loopback, against the same exported policy run in-process on the same seeds.

    python scripts/bench_ros.py --policy runs/default-dagger-seed0 --episodes 100 --rates 10 20 30

For each rate: grasp success through ROS (with its 95% interval) next to in-process success, the share
of steps whose command came from the image just before (``fresh``), image-to-command latency (the
camera image's stamp to the policy's command arriving back at the robot, p50/p99), and the watchdog:
how long after the last image the zero twist arrived, in control periods. Rates above the policy's
``control_hz`` run the simulation faster than real time (one control period of simulated time per
tick), which is what makes 30 Hz a harder latency test than 10 Hz.

Safety limits are set to the policy's own action range (``--config`` to use yours), so that the
comparison measures the transport, not the clamps. Writes ``bench.json``, ``bench.md`` and
``bench.png`` into ``--out``. Machines are shared and noisy: run it alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = result["rates"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    ip = result["in_process"]
    labels = ["in-process"] + [f"ROS {r['rate_hz']:g} Hz" for r in rates]
    rows = [ip] + [r["success"] for r in rates]
    rate = [x["success_rate"] for x in rows]
    err = np.array([[x["success_rate"] - x["ci95"][0], x["ci95"][1] - x["success_rate"]] for x in rows]).T
    a.bar(labels, rate, yerr=err, capsize=4, color=["#777"] + ["#3b7dd8"] * len(rates))
    a.set_ylabel("grasp success (95% CI)")
    a.set_title(f"same {ip['episodes']} seeds, held-out objects")
    a.set_ylim(0, 1)
    for r in rates:
        samples = r["latency_samples_ms"]
        if samples:
            b.hist(samples, bins=np.linspace(0, max(25.0, np.percentile(samples, 99.9)), 60), histtype="step",
                   label=f"{r['rate_hz']:g} Hz: p99 {r['latency_ms']['p99']:.1f} ms")
    b.axvline(20, color="r", ls="--", lw=1, label="target p99 20 ms")
    b.set_xlabel("image stamp -> command received, ms")
    b.set_ylabel("commands")
    b.set_yscale("log")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(result: dict) -> str:
    ip = result["in_process"]
    lines = [f"# ROS deployment rehearsal: {result['policy']}", "",
             f"{ip['episodes']} episodes (seeds {result['seeds'][0]}..{result['seeds'][-1]}), "
             f"env {result['env']}.", "",
             "| path | success (95% CI) | fresh commands | latency p50 / p99 | watchdog zero after |",
             "|---|---|---|---|---|",
             f"| in-process | {ip['success_rate']:.1%} ({ip['ci95'][0]:.1%}-{ip['ci95'][1]:.1%}) | - | - | - |"]
    for r in result["rates"]:
        s, lat = r["success"], r["latency_ms"] or {}
        wd = r["watchdog_delay_s"]
        wd_text = "never" if wd is None else f"{wd * 1e3:.0f} ms = {wd * r['rate_hz']:.2f} periods"
        lines.append(f"| ROS 2, {r['rate_hz']:g} Hz | {s['success_rate']:.1%} ({s['ci95'][0]:.1%}-{s['ci95'][1]:.1%}) "
                     f"| {r['fresh_fraction']:.1%} | {lat.get('p50', float('nan')):.1f} / "
                     f"{lat.get('p99', float('nan')):.1f} ms | {wd_text} |")
    lines += ["", f"Same outcome as in-process on {result['agreement']}.",
              "Policy node exit status per rate: " + ", ".join(f"{r['rate_hz']:g} Hz: {r['policy_node_exit']}"
                                                              for r in result["rates"]) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from sim2real.ros.rehearsal import add_rehearsal_args

    p.add_argument("--policy", type=Path, required=True, help="folder with policy.onnx + policy.json")
    add_rehearsal_args(p, episodes=100)
    p.add_argument("--rates", type=float, nargs="+", default=[10.0, 20.0, 30.0], help="control rates, Hz")
    p.add_argument("--config", type=Path, help="deployment YAML (default: safety at the policy's own range)")
    p.add_argument("--compressed", action="store_true", help="send JPEG CompressedImage instead of raw rgb8")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error("--episodes: must be at least 1")
    if args.out.exists() and any(args.out.iterdir()):
        print(f"error: {args.out} exists and is not empty; choose another --out", file=sys.stderr)
        return 2

    from tqdm import tqdm

    from sim2real.ros.rehearsal import env_kwargs, make_env, rehearse, run_in_process, transport_only_config
    from sim2real.runtime import OnnxPolicy, PolicyFileError
    from sim2real.stats import success_summary

    try:
        policy = OnnxPolicy(args.policy, threads=1)
    except PolicyFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    config = args.config or transport_only_config(policy.spec, args.out / "deploy.yaml")
    kwargs = env_kwargs(policy.spec, args.run, args.domain)
    env = make_env(kwargs)
    seeds = list(range(args.seed, args.seed + args.episodes))

    with tqdm(total=len(seeds), desc="in-process", unit="ep") as bar:
        inproc = run_in_process(policy, env, seeds, progress=lambda _row: bar.update())
    ip_success = {r["seed"]: r["success"] for r in inproc}
    result = {"policy": str(args.policy), "env": kwargs, "seeds": seeds,
              "in_process": success_summary(sum(ip_success.values()), len(seeds)), "rates": []}
    agreement = []
    for rate in args.rates:
        with tqdm(total=len(seeds), desc=f"ROS 2 {rate:g} Hz", unit="ep") as bar:
            report = rehearse(args.policy, env, seeds, rate, args.out, config=config, compressed=args.compressed,
                              log=lambda _text: bar.update())
        ros_success = {int(k): v for k, v in report["per_seed"].items()}
        report["success"] = success_summary(sum(ros_success.values()), len(seeds))
        same = sum(ros_success.get(s) == ip_success[s] for s in seeds)
        agreement.append(f"{same}/{len(seeds)} seeds at {rate:g} Hz")
        if report["policy_node_exit"] != 0:
            print(f"warning: the policy node exited with status {report['policy_node_exit']} at {rate:g} Hz "
                  f"(see {args.out}/policy-node-{rate:g}hz.log)", file=sys.stderr)
        if report["episodes"] < len(seeds):
            print(f"warning: {rate:g} Hz finished only {report['episodes']}/{len(seeds)} episodes "
                  f"(see {args.out}/policy-node-{rate:g}hz.log)", file=sys.stderr)
        result["rates"].append(report)
        print(f"{rate:g} Hz: success {report['success']['success_rate']:.1%} vs in-process "
              f"{result['in_process']['success_rate']:.1%}; latency p99 "
              f"{(report['latency_ms'] or {}).get('p99', float('nan')):.1f} ms; fresh {report['fresh_fraction']:.1%}; "
              f"watchdog {report['watchdog_delay_s']}", flush=True)
    result["agreement"] = ", ".join(agreement)
    (args.out / "bench.json").write_text(json.dumps(result, indent=1))
    (args.out / "bench.md").write_text(_markdown(result))
    _plot(result, args.out / "bench.png")
    print(_markdown(result))
    print(f"wrote {args.out}/bench.json, bench.md, bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
