"""Pool evaluations of a policy and compare two policies episode by episode, with honest intervals.

    python scripts/compare_evals.py RUN/eval-200ep-seed1000.json RUN/eval-400ep-seed2000.json
    python scripts/compare_evals.py ADAPTED/eval-200ep-seed1000-proxy_real.json \\
        --vs ADAPTED/eval-200ep-seed1000.json          # the transfer ratio, proxy-real over in-sim
    python scripts/compare_evals.py B/eval-200ep-seed1000.json --vs A/eval-200ep-seed1000.json

Each side is one policy's evaluations (files written by ``scripts/evaluate.py``, or a run's
``metrics.json``), pooled: success with its 95 % Wilson interval, split by the number of objects in
the scene and, for evaluations that recorded it, by what the tray wears (plain, a photograph or a
procedural kind: ``envs.textures.texture_kind``). With ``--vs``, the episodes both sides ran
(evaluations with the same ``--seed`` run the same episodes) are paired, and the difference and the
ratio of the two success rates get bootstrap intervals that resample those episodes
(``sim2real.stats.paired_comparison``). Two policies on the same 200 scenes differ far less by
chance than two independent 200-episode intervals suggest, and a ratio of two rates (the transfer
target) is noisier than either rate: this gives each its interval. Across domains the same episode
is not the same scene (the proxy-real domain draws its own numbers first); the output says so when
the paired episodes' object counts differ.

Bad input (a missing or unreadable file, no such split, a file without per-episode outcomes where
they are needed, two files of one side holding the same episodes, files of one side evaluated under
different protocols) exits with status 2 and names the file. ``--json OUT`` also writes the result
(never over an existing file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# What must agree between the evaluations pooled on one side (the seed may differ: that is the point).
PROTOCOL_KEYS = ("domain", "randomization", "observation", "image_size", "camera", "proxy_without")


class InputError(ValueError):
    """Bad input, naming the file."""


def load_side(paths: list[Path], split: str) -> dict:
    """Pool ``split`` of the evaluation files ``paths``: successes, episodes and, when every file
    has them, per-episode outcomes keyed by episode id."""
    side: dict = {"files": [str(p) for p in paths], "successes": 0, "episodes": 0, "outcomes": {},
                  "complete": True, "protocol": None}
    first, seeds = None, {}
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: not a readable JSON file ({e})") from None
        m = data.get("eval", {}).get(split) if isinstance(data, dict) and isinstance(data.get("eval"), dict) else None
        if not isinstance(m, dict) or not {"success_rate", "episodes"} <= set(m):
            raise InputError(f"{path}: no eval.{split} with success_rate and episodes "
                             f"(not an evaluation file, or evaluated without that split)")
        proto = data.get("eval_protocol") or {}
        protocol = {k: proto.get(k) for k in PROTOCOL_KEYS}
        if first is None:
            first, side["protocol"] = path, protocol
        else:
            for k in PROTOCOL_KEYS:
                if protocol[k] != side["protocol"][k]:
                    raise InputError(f"{path}: evaluated with {k} = {protocol[k]!r}, {first} with "
                                     f"{side['protocol'][k]!r}: pool only evaluations of one protocol")
        n = int(m["episodes"])
        outcomes = m.get("outcomes")
        seed = proto.get("seed")
        if outcomes is None:
            side["complete"] = False
        if seed in seeds and (outcomes is None or seeds[seed][1] is None):
            raise InputError(f"{path}: evaluated with --seed {seed} like {seeds[seed][0]}, so both hold the same "
                             f"first episodes, which would count twice")
        seeds[seed] = (path, outcomes)
        if outcomes is None:
            side["successes"] += round(float(m["success_rate"]) * n)
            side["episodes"] += n
            continue
        ids, success = outcomes.get("episode"), outcomes.get("success")
        objects = outcomes.get("objects") or [0] * n
        # (Evaluations from before the tray was recorded have none: no split by tray for that side.)
        trays = outcomes.get("tray") or [None] * n
        if not (isinstance(ids, list) and isinstance(success, list) and isinstance(trays, list)
                and len(ids) == len(success) == len(objects) == len(trays) == n):
            raise InputError(f"{path}: eval.{split}.outcomes must list episode, success and objects (and tray, "
                             f"when given) for each of its {n} episodes")
        for row, (i, s, o, t) in enumerate(zip(ids, success, objects, trays, strict=True)):
            if s not in (0, 1):
                raise InputError(f"{path}: eval.{split}.outcomes.success[{row}] = {s!r}: must be 0 or 1")
            if i in side["outcomes"]:
                raise InputError(f"{path}: episode {i} is also in {side['outcomes'][i][2]}: the same episodes "
                                 f"would count twice (evaluations with the same --seed share their first episodes)")
            side["outcomes"][i] = (int(s), int(o), str(path), None if t is None else str(t))
        side["successes"] += sum(success)
        side["episodes"] += n
    return side


def summarize(side: dict) -> dict:
    from sim2real.stats import success_summary

    out = {"files": side["files"], "protocol": side["protocol"],
           **success_summary(side["successes"], side["episodes"]), "successes": side["successes"]}
    if side["complete"]:
        objects: dict[int, list[int]] = {}
        trays: dict[str | None, list[int]] = {}
        for s, o, _, t in side["outcomes"].values():
            objects.setdefault(o, []).append(s)
            trays.setdefault(t, []).append(s)

        def split(groups) -> dict:
            return {str(k): {**success_summary(sum(v), len(v)), "successes": sum(v)} for k, v in groups}

        out["by_objects"] = split(sorted(objects.items()))
        if None not in trays:  # (every file recorded the tray; most episodes first)
            out["by_tray"] = split(sorted(trays.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    return out


def compare(a: dict, b: dict, seed: int = 0) -> dict:
    """Pair the episodes both sides ran; difference and ratio of success with bootstrap intervals."""
    from sim2real.stats import paired_comparison

    for side, name in ((a, "the first side"), (b, "--vs")):
        if not side["complete"]:
            raise InputError(f"{name}: pairing needs per-episode outcomes, and {', '.join(side['files'])} "
                             f"include a file without them (written before evaluate.py stored them): evaluate again")
    common = [i for i in a["outcomes"] if i in b["outcomes"]]
    if not common:
        raise InputError(f"no episode in both {', '.join(a['files'])} and {', '.join(b['files'])}: "
                         f"evaluate both policies with the same --seed")
    out = paired_comparison([a["outcomes"][i][0] for i in common], [b["outcomes"][i][0] for i in common], seed=seed)
    out["only_first"] = len(a["outcomes"]) - len(common)
    out["only_vs"] = len(b["outcomes"]) - len(common)
    # The same id is the same scene only where both drew the same numbers: the proxy-real domain
    # draws its own first, so across domains ids name different scenes. The interval stays right
    # (pairs of independent outcomes resample as independent samples) but gains nothing from pairing.
    out["objects_differ"] = sum(a["outcomes"][i][1] != b["outcomes"][i][1] for i in common)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _ci(ci: list[float]) -> str:
    return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f} %"


def render(result: dict, split: str) -> str:
    lines = []
    for key, title in (("first", "Policy A"), ("vs", "Policy B (--vs)")):
        s = result.get(key)
        if s is None:
            continue
        proto = s["protocol"]
        lines += [f"## {title}: {split}, domain {proto.get('domain')}, {len(s['files'])} file(s)", "",
                  f"success **{_pct(s['success_rate'])}** ({_ci(s['ci95'])}), {s['successes']} of "
                  f"{s['episodes']} episodes", ""]
        for by, column in (("by_objects", "objects in the scene"), ("by_tray", "the tray wears")):
            if by in s:
                lines += [f"| {column} | episodes | success (95 % CI) |", "|---|---|---|"]
                lines += [f"| {k} | {v['episodes']} | {_pct(v['success_rate'])} ({_ci(v['ci95'])}) |"
                          for k, v in s[by].items()]
                lines.append("")
    p = result.get("paired")
    if p is not None:
        ratio = "—" if p["ratio"] is None else (
            f"**{p['ratio']:.3f}** ({p['ratio_ci95'][0]:.3f}–{p['ratio_ci95'][1]:.3f})")
        lines += [f"## Paired: the {p['episodes']} episodes both ran", "",
                  "| A | B | A − B (95 % CI) | A ÷ B (95 % CI) | A only / B only grasped |", "|---|---|---|---|---|",
                  f"| {_pct(p['a'])} | {_pct(p['b'])} | **{100 * p['difference']:+.1f} points** "
                  f"({100 * p['difference_ci95'][0]:+.1f} to {100 * p['difference_ci95'][1]:+.1f}) | {ratio} | "
                  f"{p['a_only']} / {p['b_only']} |", ""]
        if p["objects_differ"]:
            lines += [f"Not the same scenes: the number of objects differs in {p['objects_differ']} of the "
                      f"{p['episodes']} paired episodes (e.g. sim against proxy_real, which draws its own numbers "
                      f"first). The intervals hold, but pairing does not narrow them.", ""]
        if p["only_first"] or p["only_vs"]:
            lines += [f"Left out of the pairing: {p['only_first']} episodes only A ran, {p['only_vs']} only B ran.", ""]
        lines += ["Intervals: bootstrap over the paired episodes (5,000 resamples).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, help="evaluation JSON files of one policy (pooled)")
    p.add_argument("--vs", nargs="+", type=Path, metavar="FILE",
                   help="evaluation files of the policy to compare with, episode by episode")
    p.add_argument("--split", choices=("heldout_objects", "train_objects"), default="heldout_objects",
                   help="object split to read (default heldout_objects)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the result here (a new file)")
    args = p.parse_args(argv)
    if args.json is not None and args.json.exists():
        print(f"error: {args.json}: already exists; choose a new --json path", file=sys.stderr)
        return 2
    try:
        first = load_side(args.files, args.split)
        result: dict = {"split": args.split, "first": summarize(first)}
        if args.vs:
            vs = load_side(args.vs, args.split)
            result["vs"] = summarize(vs)
            result["paired"] = compare(first, vs)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(render(result, args.split))
    if args.json is not None:
        from sim2real.runs import atomic_write_json

        atomic_write_json(args.json, result)
        print(json.dumps({"written": str(args.json)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
