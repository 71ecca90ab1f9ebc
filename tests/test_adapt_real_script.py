"""``scripts/record_proxy_real.py`` -> ``scripts/adapt_real.py`` -> ``scripts/evaluate.py --domain
proxy_real`` end to end, as a user would run them (subprocess, tiny settings), and bad input that must
stop with exit status 2, name the file and row, and write nothing."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sim2real.data.episodes import read_dataset

ROOT = Path(__file__).resolve().parents[1]
COMPARE = ("zero_shot", "probe", "scratch")
# One torch thread: the batches are tiny, and on a busy 2-core machine more threads only contend.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)


def adapt(run_dir: Path, data: Path, out: Path, *extra: str, compare: str = "zero_shot",
          steps: str = "1") -> subprocess.CompletedProcess:
    return run("scripts/adapt_real.py", "--run", str(run_dir), "--data", str(data), "--out", str(out),
               "--steps", steps, "--budgets", "", "--compare", compare, *extra)


@pytest.fixture(scope="module")
def recorded(fake_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("proxy") / "real_grasps"
    proc = run("scripts/record_proxy_real.py", "--run", str(fake_run), "--out", str(out), "--demos", "3",
               "--interventions", "1", "--policy-runs", "1", "--every", "2",
               "--rig-calibration", str(out.parent / "rig.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_rig_calibration_is_the_pose_the_proxy_domain_renders_from(recorded):
    from envs.camera import Camera
    from envs.proxy_real import ProxyRealDomain

    out, summary = recorded
    rig = Camera.from_camera_info(summary["rig_calibration"])
    assert rig == ProxyRealDomain().camera(Camera())
    assert np.linalg.norm(np.subtract(rig.position, Camera().position)) > 0.02


@pytest.fixture(scope="module")
def adapted(fake_run, recorded, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapted") / "run-adapted"
    proc = adapt(fake_run, recorded[0], out, compare=",".join(COMPARE), steps="3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rewrite_cell(root: Path, row: int, column: str, value: str) -> None:
    """Set ``column`` of data row ``row`` (0-based, header excluded) of steps.csv."""
    path = root / "steps.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        columns = list(rows[0])
    rows[row][column] = value
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows(rows)


# ---------------------------------------------------------------------- end to end
def test_recording_keeps_only_what_a_real_robot_knows(recorded):
    root, summary = recorded
    assert summary["episodes"] == 5 and summary["demos"] == 3 and summary["policy_runs"] == 1
    assert summary["interventions"] == 1
    ds = read_dataset(root)
    assert len(ds) == summary["rows"] and ds.images.shape[1:] == (64, 64, 3)
    assert ds.meta["camera"]["position"] and "proxy_real" in ds.meta["source"]
    assert np.isnan(ds.object).all()  # no object poses on a real robot
    assert np.isfinite(ds.proprio).all() and np.isfinite(ds.action).all()
    sources = [e["source"] for e in ds.episodes]
    assert sources == ["proxy_real-demo"] * 3 + ["proxy_real-intervention", "proxy_real-policy"]
    demo, takeover, policy = ds.episode < 3, ds.episode == 3, ds.episode == 4
    np.testing.assert_array_equal(ds.expert_action[demo], ds.action[demo])  # teleoperation: label = action
    assert np.isnan(ds.expert_action[policy]).all()
    # An intervention: the policy's steps first (no operator label), then the operator's (label = action).
    operator = np.isfinite(ds.expert_action[takeover]).all(axis=1)
    assert not operator[0] and operator[-1] and np.array_equal(operator, np.sort(operator))
    np.testing.assert_array_equal(ds.expert_action[takeover][operator], ds.action[takeover][operator])
    # Grasp labels sit on the rows up to the executed grasp: a prefix of each episode, one pose per episode.
    for e in range(5):
        has = np.isfinite(ds.grasp[ds.episode == e]).all(axis=1)
        np.testing.assert_array_equal(has, np.sort(has)[::-1], err_msg=f"episode {e}")
        if has.any():
            assert len(np.unique(ds.grasp[ds.episode == e][has], axis=0)) == 1
    labelled_eps = {e for e in range(5) if (np.isfinite(ds.grasp).all(axis=1) & (ds.episode == e)).any()
                    and ds.success[ds.episode == e][0] == 1}
    assert len(labelled_eps) >= 2, "the expert demos must give at least 2 labelled episodes"
    assert summary["labelled_rows"] > 0 and summary["successes"] >= 2


def test_adapt_real_writes_a_complete_adapted_run(fake_run, recorded, adapted):
    out, proc = adapted
    for name in ("policy.pt", "encoder.pt", "config.json", "metrics.json", "report.md", "report.png",
                 "policy.onnx", "policy.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert {"train", "adapt"} <= config.keys()
    assert config["train"]["image_size"] == 64
    a = config["adapt"]
    assert a["steps"] == 3 and tuple(a["compare"]) == COMPARE and a["chosen"] in COMPARE
    assert a["source_run"] == str(fake_run) and a["data"] == str(recorded[0])
    metrics = json.loads((out / "metrics.json").read_text())["adapt"]
    assert list(metrics["results"]) == list(COMPARE) and metrics["chosen"] == a["chosen"]
    assert metrics["rows"] == recorded[1]["rows"] and metrics["efficiency"] is None
    assert metrics["train_rows"] > 0 and metrics["val_rows"] > 0
    for name, r in metrics["results"].items():
        assert r["val"]["rows"] == metrics["val_rows"], name
        assert "sim" in r  # the fake run kept data/: forgetting is measured
    report = (out / "report.md").read_text()
    for name in COMPARE:
        assert f"| {name}" in report, name
    assert f"**{a['chosen']}**" in report
    png = cv2.imread(str(out / "report.png"))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 100
    assert "chosen:" in proc.stdout
    # The export's parity check ran on the real observations (an adapted run keeps no data/ to draw on).
    spec = json.loads((out / "policy.json").read_text())
    assert spec["exporter"]["parity_rows"] == min(64, metrics["rows"]) and spec["adapted"]


def test_adapted_policy_loads_and_records_its_origin(adapted):
    import torch

    from policies.policy import GraspPolicy
    from sim2real.runs import safe_torch_load

    out, _ = adapted
    blob = safe_torch_load(out / "policy.pt")
    chosen = json.loads((out / "config.json").read_text())["adapt"]["chosen"]
    assert blob["extra"]["strategy"] == chosen
    policy = GraspPolicy.load(out / "policy.pt")
    action = policy.act(np.zeros((64, 64, 3), np.uint8), np.array([0.55, 0, 0.2, 0, 0.08], np.float32))
    assert action.shape == (5,) and np.all(np.abs(action) <= 1) and torch.isfinite(torch.as_tensor(action)).all()


def test_evaluate_runs_on_the_adapted_run_in_the_proxy_real_domain(adapted):
    out, _ = adapted
    proc = run("scripts/evaluate.py", str(out), "--episodes", "2", "--train-episodes", "0", "--domain",
               "proxy_real", "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "eval-2ep-seed1000-proxy_real.json").read_text())
    assert result["eval_protocol"]["domain"] == "proxy_real"
    assert result["eval"]["heldout_objects"]["episodes"] == 2 and "train_objects" not in result["eval"]
    assert (out / "metrics.json").is_file() and "adapt" in json.loads((out / "metrics.json").read_text())


def test_evaluate_leaves_out_proxy_parts_and_names_the_file_after_them(adapted):
    """Any order, repeats: one name per evaluation (the parts in PROXY_PARTS order)."""
    out, _ = adapted
    proc = run("scripts/evaluate.py", str(out), "--episodes", "1", "--train-episodes", "0", "--domain",
               "proxy_real", "--proxy-without", "sensor,camera,camera", "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "eval-1ep-seed1000-proxy_real-without-camera-sensor.json").read_text())
    assert result["eval_protocol"]["proxy_without"] == ["camera", "sensor"]


@pytest.mark.parametrize("args, message", [
    (("--domain", "proxy_real", "--proxy-without", "lens"), "unknown part(s) lens"),
    (("--proxy-without", "camera"), "only with --domain proxy_real")])
def test_evaluate_rejects_bad_proxy_parts(adapted, args, message):
    out, _ = adapted
    proc = run("scripts/evaluate.py", str(out), "--episodes", "1", *args)
    assert proc.returncode == 2 and message in proc.stderr


# -------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("flag", ["--workers", "--steps", "--sim-tune-draws"])
def test_fewer_than_one_worker_or_step_is_a_usage_error(fake_run, real_dataset, tmp_path, flag):
    out = tmp_path / "out"
    proc = run("scripts/adapt_real.py", "--run", str(fake_run), "--data", str(real_dataset), "--out", str(out),
               flag, "0")
    assert proc.returncode == 2 and f"{flag}: must be at least 1, got 0" in proc.stderr, proc.stderr[-2000:]
    assert not out.exists()


@pytest.mark.parametrize("value", ["1.5", "-0.25", "nan"])
def test_a_source_weight_outside_zero_to_one_is_a_usage_error(fake_run, real_dataset, tmp_path, value):
    out = tmp_path / "out"
    proc = run("scripts/adapt_real.py", "--run", str(fake_run), "--data", str(real_dataset), "--out", str(out),
               "--sim-tune-source-weight", value)
    assert proc.returncode == 2 and "--sim-tune-source-weight: must be in [0, 1]" in proc.stderr, proc.stderr[-2000:]
    assert not out.exists()


def test_non_numeric_cell_names_file_row_and_column(fake_run, real_dataset, tmp_path):
    data = copy_dataset(real_dataset, tmp_path / "data")
    rewrite_cell(data, 7, "ee_x", "0.5m")
    out = tmp_path / "out"
    proc = adapt(fake_run, data, out)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(data / "steps.csv") in proc.stderr and "row 9" in proc.stderr and "ee_x" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_missing_image_stops_unless_skip_bad(fake_run, real_dataset, tmp_path):
    data = copy_dataset(real_dataset, tmp_path / "data")
    missing = data / "images" / "000002_001.png"
    missing.unlink()
    out = tmp_path / "out"
    proc = adapt(fake_run, data, out)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(missing) in proc.stderr and "row 15" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()

    proc = adapt(fake_run, data, out, "--skip-bad")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped" in proc.stdout and str(missing) in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())["adapt"]
    assert metrics["rows"] == 35 and len(metrics["skipped"]) == 1 and str(missing) in metrics["skipped"][0]
    assert (out / "policy.pt").is_file() and (out / "report.md").is_file()


def test_existing_out_is_kept_without_overwrite(fake_run, real_dataset, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("my earlier results")
    proc = adapt(fake_run, real_dataset, out)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(out) in proc.stderr and "--overwrite" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "my earlier results"

    proc = adapt(fake_run, real_dataset, out, "--overwrite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "policy.pt").is_file() and not (out / "notes.txt").exists()
    assert not list(tmp_path.glob("out.old-*"))  # the old run is discarded once the new one is written


def test_unrecognizable_data_folder_is_named(fake_run, tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    (data / "frame.png").write_bytes(b"not really")
    out = tmp_path / "out"
    proc = adapt(fake_run, data, out)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(data) in proc.stderr and "native" in proc.stderr and "lerobot" in proc.stderr
    assert not out.exists()


def test_labels_in_only_one_episode_are_not_enough(fake_run, tmp_path, write_dataset):
    data = write_dataset(tmp_path / "one_label", episodes=3, steps=4, labelled=(1,), failed=())
    out = tmp_path / "out"
    proc = adapt(fake_run, data, out)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(data) in proc.stderr and "2 episodes" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("args", [("--compare", "dann"), ("--compare", "zero_shot", "--strategy", "coral")],
                         ids=["compare-only-dann", "strategy-coral"])
def test_uda_without_sim_data_fails_clearly(fake_run_without_data, real_dataset, tmp_path, args):
    """DANN / CORAL need the run's simulated rows. When the run kept none and nothing else is left to
    compare (or they were asked for with --strategy), the script must say so (exit 2), not crash."""
    out = tmp_path / "out"
    proc = run("scripts/adapt_real.py", "--run", str(fake_run_without_data), "--data", str(real_dataset),
               "--out", str(out), "--steps", "1", "--budgets", "", *args)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 2
    assert ("dann" in proc.stderr or "coral" in proc.stderr) and "data" in proc.stderr
    assert not (out / "policy.pt").exists()


def test_record_refuses_to_overwrite_a_dataset(fake_run, tmp_path):
    out = tmp_path / "real"
    out.mkdir()
    (out / "dataset.json").write_text("{}")
    proc = run("scripts/record_proxy_real.py", "--run", str(fake_run), "--out", str(out), "--demos", "1",
               "--interventions", "0", "--policy-runs", "0")
    assert proc.returncode == 2 and str(out) in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "dataset.json").read_text() == "{}"
