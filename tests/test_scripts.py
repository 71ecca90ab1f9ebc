"""Every script runs end to end as a user would run it (subprocess, tiny settings)."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_render_grid_writes_a_png(tmp_path):
    out = tmp_path / "grid.png"
    proc = run("scripts/render_grid.py", "--out", str(out), "--columns", "2", "--presets", "none", "full",
               "--image-size", "32", "--tile", "64")
    assert proc.returncode == 0, proc.stderr
    image = cv2.imread(str(out))
    assert image.shape == (128, 128, 3)


def test_render_grid_shows_sim_and_proxy_real_rows(tmp_path):
    out = tmp_path / "domains.png"
    proc = run("scripts/render_grid.py", "--out", str(out), "--columns", "2", "--tile", "64", "--domains")
    assert proc.returncode == 0, proc.stderr[-2000:]
    grid = cv2.imread(str(out)).astype(int)
    assert grid.shape == (128, 128, 3)
    # The two rows show different domains: clearly different pixels.
    assert abs(grid[:64] - grid[64:]).mean() > 10


def test_render_grid_rejects_a_non_png_path(tmp_path):
    proc = run("scripts/render_grid.py", "--out", str(tmp_path / "grid.jpg"))
    assert proc.returncode == 2 and "grid.jpg" in proc.stderr


def test_evaluate_expert_reports_rate_and_interval(tmp_path):
    out = tmp_path / "expert.json"
    proc = run("scripts/evaluate_expert.py", "--episodes", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["episodes"] == 2
    low, high = result["ci95"]
    assert 0 <= low <= result["success_rate"] <= high <= 1


def test_evaluate_expert_rejects_zero_episodes():
    proc = run("scripts/evaluate_expert.py", "--episodes", "0")
    assert proc.returncode == 2 and "--episodes" in proc.stderr


def test_bench_servo_writes_rates_and_a_plot_and_a_large_error_breaks_the_grasp(tmp_path):
    proc = run("scripts/bench_servo.py", "--episodes", "3", "--sizes", "0,0.2", "--kinds", "bias",
               "--randomization", "light", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "bench_servo.json").read_text())
    rows = {(r["kind"], r["size_m"]): r for r in result["rows"]}
    assert set(rows) == {("none", 0.0), ("bias", 0.2)} and all(r["episodes"] == 3 for r in rows.values())
    from policies.policy import ServoLaw
    assert result["law"] == "student" and ServoLaw.from_dict(result["servo"]) == ServoLaw.student()
    # On the true grasp the control law lifts objects; 20 cm off, it closes beside them every time.
    assert rows["none", 0.0]["success_rate"] > 0 and rows["bias", 0.2]["success_rate"] == 0
    assert cv2.imread(str(tmp_path / "bench_servo.png")) is not None


def test_bench_servo_runs_the_experts_law_when_asked(tmp_path):
    proc = run("scripts/bench_servo.py", "--episodes", "1", "--sizes", "0", "--law", "expert",
               "--randomization", "none", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    from policies.policy import ServoLaw
    result = json.loads((tmp_path / "bench_servo.json").read_text())
    assert result["law"] == "expert" and ServoLaw.from_dict(result["servo"]) == ServoLaw.expert()


def test_bench_servo_rejects_bad_sizes_and_kinds():
    for args, message in ((("--sizes", "0,abc"), "--sizes"), (("--sizes", "-0.1"), "--sizes"),
                          (("--kinds", "drift"), "--kinds")):
        proc = run("scripts/bench_servo.py", *args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_bench_env_runs_without_peers(tmp_path):
    out = tmp_path / "bench.json"
    proc = run("scripts/bench_env.py", "--seconds", "1", "--resets", "8", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["steps_per_s"] > 0 and result["vec2_steps_per_s"] > 0
    assert "| env steps/s" in proc.stdout


def test_diagnose_estimate_writes_a_table_and_a_plot_and_keeps_an_earlier_result(fake_run, tmp_path):
    out = tmp_path / "diag"
    args = ("scripts/diagnose_estimate.py", str(fake_run), "--episodes", "1", "--no-plan", "--out", str(out))
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "estimate_errors.json").read_text())
    assert result["episodes"] == 1 and result["drive"] == "student" and len(result["rows"]) > 0
    assert sum(r["states"] for r in result["table"]) == len(result["rows"])
    assert "gain" in proc.stdout and cv2.imread(str(out / "estimate_errors.png")) is not None
    before = (out / "estimate_errors.json").read_bytes()
    again = run(*args)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert (out / "estimate_errors.json").read_bytes() == before


def test_bench_oracle_writes_paired_rows_and_a_plot_and_keeps_an_earlier_result(fake_run, tmp_path):
    out = tmp_path / "oracle"
    args = ("scripts/bench_oracle.py", str(fake_run), "--episodes", "2", "--rows", ",xy+holding,expert",
            "--workers", "1", "--out", str(out))
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "oracle.json").read_text())
    assert [r["row"] for r in result["rows"]] == ["", "xy+holding", "expert"]
    assert all(r["episodes"] == 2 and len(r["successes"]) == 2 for r in result["rows"])
    assert result["law"] == "policy" and result["servo"]["xy_tol"] > 0
    assert "scripted expert" in proc.stdout and cv2.imread(str(out / "oracle.png")) is not None
    before = (out / "oracle.json").read_bytes()
    again = run(*args)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert (out / "oracle.json").read_bytes() == before


def test_bench_oracle_rejects_bad_rows_and_folders(fake_run, tmp_path):
    proc = run("scripts/bench_oracle.py", str(fake_run), "--rows", "xy+depth", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "'depth'" in proc.stderr
    proc = run("scripts/bench_oracle.py", str(tmp_path))
    assert proc.returncode == 2 and "not a run directory" in proc.stderr


def test_diagnose_estimate_runs_in_the_proxy_real_domain(fake_run, tmp_path):
    proc = run("scripts/diagnose_estimate.py", str(fake_run), "--episodes", "1", "--no-plan", "--drive", "expert",
               "--domain", "proxy_real", "--out", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "d" / "estimate_errors.json").read_text())
    assert result["domain"] == "proxy_real" and len(result["rows"]) > 0 and "proxy_real" in proc.stdout


def test_diagnose_estimate_rejects_a_folder_that_is_not_a_run(tmp_path):
    proc = run("scripts/diagnose_estimate.py", str(tmp_path))
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    proc = run("scripts/diagnose_estimate.py", str(tmp_path), "--episodes", "0")
    assert proc.returncode == 2 and "--episodes" in proc.stderr


def _eval_file(path, success, ids, objects=None, split="heldout_objects", domain="sim", seed=1000, outcomes=True,
               tray=None):
    """An evaluation file as scripts/evaluate.py writes it (``tray`` None: as before it recorded the tray)."""
    n = len(success)
    m = {"success_rate": sum(success) / n, "episodes": n, "ci95": [0.0, 1.0], "mean_steps": 20.0}
    if outcomes:
        m["outcomes"] = {"episode": ids, "success": success, "steps": [20] * n, "objects": objects or [1] * n}
        if tray is not None:
            m["outcomes"]["tray"] = tray
    path.write_text(json.dumps({"eval": {split: m}, "eval_protocol": {
        "domain": domain, "randomization": "full", "observation": "pixels", "image_size": 64, "camera": "default",
        "seed": seed}}))
    return str(path)


def test_compare_evals_pools_splits_by_objects_and_pairs_episodes(tmp_path):
    # A: 300 episodes in two files (different seeds); B: the first 200 of them, grasped less often.
    ids1, ids2 = [f"1:{i}" for i in range(200)], [f"2:{i}" for i in range(100)]
    a1 = _eval_file(tmp_path / "a1.json", [1] * 150 + [0] * 50, ids1, objects=[1] * 100 + [3] * 100)
    a2 = _eval_file(tmp_path / "a2.json", [1] * 50 + [0] * 50, ids2, objects=[2] * 100, seed=2000)
    b = _eval_file(tmp_path / "b.json", [1] * 130 + [0] * 70, ids1, domain="proxy_real")
    out = tmp_path / "cmp.json"
    proc = run("scripts/compare_evals.py", a1, a2, "--vs", b, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    first = result["first"]
    assert first["episodes"] == 300 and first["successes"] == 200
    assert first["success_rate"] == pytest.approx(2 / 3) and first["ci95"][0] < 2 / 3 < first["ci95"][1]
    assert {o: v["successes"] for o, v in first["by_objects"].items()} == {"1": 100, "2": 50, "3": 50}
    paired = result["paired"]
    assert paired["episodes"] == 200 and paired["only_first"] == 100 and paired["only_vs"] == 0
    assert paired["a"] == 0.75 and paired["b"] == 0.65 and paired["a_only"] == 20 and paired["b_only"] == 0
    assert paired["ratio"] == pytest.approx(0.75 / 0.65) and 0 < paired["difference_ci95"][0]
    assert "**+10.0 points**" in proc.stdout and "| 3 | 100 | 50.0 %" in proc.stdout
    # B's scenes hold one object each, A's first 100 one and the next 100 three: not the same scenes.
    assert paired["objects_differ"] == 100 and "Not the same scenes" in proc.stdout
    # The result file is never overwritten.
    again = run("scripts/compare_evals.py", a1, "--json", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_compare_evals_splits_by_what_the_tray_wears(tmp_path):
    ids1, ids2 = [f"1:{i}" for i in range(100)], [f"2:{i}" for i in range(40)]
    a1 = _eval_file(tmp_path / "a1.json", [1] * 60 + [0] * 10 + [1] * 10 + [0] * 20, ids1,
                    tray=["plain"] * 70 + ["fractal"] * 30)
    a2 = _eval_file(tmp_path / "a2.json", [1] * 30 + [0] * 10, ids2, tray=["photo"] * 40, seed=2000)
    out = tmp_path / "cmp.json"
    proc = run("scripts/compare_evals.py", a1, a2, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    by_tray = json.loads(out.read_text())["first"]["by_tray"]
    assert {t: (v["successes"], v["episodes"]) for t, v in by_tray.items()} == {
        "plain": (60, 70), "photo": (30, 40), "fractal": (10, 30)}
    assert list(by_tray) == ["plain", "photo", "fractal"]  # most episodes first
    assert "| fractal | 30 | 33.3 %" in proc.stdout
    # Pooled with an evaluation from before the tray was recorded: no split by tray, nothing invented.
    old = _eval_file(tmp_path / "old.json", [1] * 40, [f"3:{i}" for i in range(40)], seed=3000)
    proc = run("scripts/compare_evals.py", a1, old, "--json", str(tmp_path / "cmp2.json"))
    assert proc.returncode == 0, proc.stderr
    first = json.loads((tmp_path / "cmp2.json").read_text())["first"]
    assert "by_tray" not in first and "by_objects" in first and "the tray wears" not in proc.stdout
    # A tray list that does not match the episodes is bad input, named.
    short = _eval_file(tmp_path / "short.json", [1] * 10, [f"4:{i}" for i in range(10)], tray=["plain"] * 9, seed=4)
    text = _eval_file(tmp_path / "text.json", [1] * 5, [f"5:{i}" for i in range(5)], tray="plain", seed=5)
    for bad in (short, text):
        proc = run("scripts/compare_evals.py", bad)
        assert proc.returncode == 2 and f"{bad}: eval.heldout_objects.outcomes must list" in proc.stderr


def test_compare_evals_rejects_what_would_mislead(tmp_path):
    ids = [f"1:{i}" for i in range(10)]
    a = _eval_file(tmp_path / "a.json", [1] * 10, ids)
    longer = _eval_file(tmp_path / "a400.json", [1] * 12, ids + ["1:10", "1:11"])
    proxy = _eval_file(tmp_path / "p.json", [1] * 10, [f"3:{i}" for i in range(10)], domain="proxy_real", seed=3)
    old = _eval_file(tmp_path / "old.json", [1] * 10, ids, outcomes=False)
    other_seed = _eval_file(tmp_path / "o.json", [1] * 10, [f"9:{i}" for i in range(10)], seed=9)
    no_split = _eval_file(tmp_path / "t.json", [1] * 10, ids, split="train_objects")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    cases = [
        ((a, longer), f"{longer}: episode 1:0 is also in {a}"),  # same --seed: the same first episodes
        ((a, old), f"{old}: evaluated with --seed 1000 like {a}"),
        ((a, proxy), f"{proxy}: evaluated with domain = 'proxy_real'"),
        ((a, str(tmp_path / "missing.json")), "missing.json: no such file"),
        ((str(bad),), f"{bad}: not a readable JSON file"),
        ((no_split,), f"{no_split}: no eval.heldout_objects"),
        ((a, "--vs", other_seed), "no episode in both"),
        ((a, "--vs", old), "needs per-episode outcomes"),
    ]
    for args, message in cases:
        proc = run("scripts/compare_evals.py", *args)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
    # Files without outcomes still pool by their counts when their seeds differ.
    proc = run("scripts/compare_evals.py", old, other_seed)
    assert proc.returncode == 0 and "20 of 20 episodes" in proc.stdout, proc.stderr
