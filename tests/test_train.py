"""The training pipeline and its scripts: smoke preset end to end (subprocess), evaluation,
resume after an interruption, and bad arguments that must fail clearly and touch nothing."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policies import train as train_mod
from policies.train import TrainConfig, Trainer, apply_overrides, reuse_collected, start_run
from sim2real.runs import RunError

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "smoke"
    proc = run("scripts/train_sim.py", "--preset", "smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_smoke_preset_writes_a_self_describing_run(smoke_run):
    out, proc = smoke_run
    for name in ("config.json", "encoder.pt", "policy.pt", "metrics.json", "learning_curve.png", "rollout.gif",
                 "data/expert/steps.csv", "data/dagger_1/steps.csv"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["preset"] == "smoke" and config["environment"]["versions"]["torch"]
    assert "git_commit" in config["environment"]
    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("heldout_objects", "train_objects"):
        m = metrics["eval"][split]
        assert set(m) >= {"success_rate", "episodes", "ci95"} and m["episodes"] > 0
        assert 0 <= m["ci95"][0] <= m["success_rate"] <= m["ci95"][1] <= 1
    assert metrics["wall_time_s"] > 0 and metrics["eval_protocol"]["randomization"] == "full"
    assert "held-out objects:" in proc.stdout
    # The trained policy acts with the servo law its config names (the student's by default).
    from policies.policy import GraspPolicy, ServoLaw
    policy = GraspPolicy.load(out / "policy.pt")
    assert policy.servo == ServoLaw.from_dict(config["train"]["servo"]) == ServoLaw.student()
    assert policy.geometry is not None  # grasp_geometry is on by default
    from policies.encoders import load_encoder
    assert load_encoder(out / "encoder.pt").spec.image_size == 64


def test_evaluate_script_reevaluates_a_run(smoke_run):
    out, _ = smoke_run
    proc = run("scripts/evaluate.py", str(out), "--episodes", "2", "--train-episodes", "1", "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "eval-2ep-seed1000.json").read_text())
    assert result["eval"]["heldout_objects"]["episodes"] == 2 and result["eval"]["train_objects"]["episodes"] == 1
    # Per-episode outcomes, consistent with the rate: they let evaluations be pooled and paired.
    held = result["eval"]["heldout_objects"]
    outcomes = held["outcomes"]
    assert len(outcomes["episode"]) == len(set(outcomes["episode"])) == len(outcomes["success"]) == 2
    assert sum(outcomes["success"]) == round(held["success_rate"] * 2)
    assert all(1 <= n <= 4 for n in outcomes["objects"]) and all(s > 0 for s in outcomes["steps"])
    from envs.textures import KINDS

    assert len(outcomes["tray"]) == 2 and set(outcomes["tray"]) <= {"plain", "photo", *KINDS}
    # Training's own evaluation ran the same episodes (seed 1000): compare_evals pairs them all.
    proc = run("scripts/compare_evals.py", str(out / "eval-2ep-seed1000.json"), "--vs", str(out / "metrics.json"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "## Paired: the 2 episodes both ran" in proc.stdout


def test_existing_run_is_not_overwritten_without_flag(smoke_run):
    out, _ = smoke_run
    before = (out / "metrics.json").read_bytes()
    proc = run("scripts/train_sim.py", "--preset", "smoke", "--out", str(out))
    assert proc.returncode == 2 and "already exists" in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "metrics.json").read_bytes() == before


def test_corrupt_checkpoint_is_reported_and_left_alone(smoke_run, tmp_path):
    out, _ = smoke_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "policy.pt").write_bytes(b"\x00" * 100)
    listing = sorted(p.name for p in copy.iterdir())
    proc = run("scripts/train_sim.py", "--out", str(copy), "--resume")
    assert proc.returncode == 2 and "policy.pt" in proc.stderr and "corrupt" in proc.stderr
    proc = run("scripts/evaluate.py", str(copy), "--episodes", "1")
    assert proc.returncode == 2 and "policy.pt" in proc.stderr
    assert sorted(p.name for p in copy.iterdir()) == listing


@pytest.mark.parametrize("args,message", [
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--algo", "dqn"], "unknown algorithm 'dqn'"),
    (["--out", "/proc/sim2real-test-run"], "not writable"),
    (["--camera", "/nonexistent/cam.yaml"], "no such file"),
])
def test_bad_arguments_fail_clearly(args, message):
    proc = run("scripts/train_sim.py", *args)
    assert proc.returncode == 2 and message in proc.stderr


def test_interrupted_run_resumes_without_redoing_finished_stages(tmp_path, monkeypatch):
    cfg = TrainConfig.preset_config("smoke", workers=1, gif_episodes=0)
    cfg, run_dir = start_run(cfg, tmp_path / "r")
    real_fit = train_mod.fit
    calls = []

    def interrupted_fit(policy, data, fit_cfg, seed=0, progress=None, **kw):
        calls.append(progress)
        if progress == "behaviour cloning":
            raise KeyboardInterrupt  # the user pressed Ctrl-C during BC
        return real_fit(policy, data, fit_cfg, seed=seed, **kw)

    monkeypatch.setattr(train_mod, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, run_dir, log=lambda *_: None).run_all()
    assert set(run_dir.stages_done()) == {"expert", "views", "pretrain"}
    steps_csv = (run_dir / "data" / "expert" / "steps.csv").read_bytes()
    encoder = (run_dir / "encoder.pt").read_bytes()

    monkeypatch.setattr(train_mod, "fit", real_fit)
    cfg2, run2 = start_run(TrainConfig.preset_config("smoke", workers=1), tmp_path / "r", resume=True)
    assert cfg2.gif_episodes == 0  # the saved config wins on resume
    metrics = Trainer(cfg2, run2, log=lambda *_: None).run_all()
    assert (run2 / "data" / "expert" / "steps.csv").read_bytes() == steps_csv  # not recollected
    assert (run2 / "encoder.pt").read_bytes() == encoder  # not retrained
    assert {"bc", "dagger_1", "dagger_1_fit", "evaluate"} <= set(run2.stages_done())
    assert metrics["eval"]["heldout_objects"]["episodes"] == cfg.eval_episodes


def test_config_round_trip_and_validation():
    cfg = TrainConfig.preset_config("full", seed=3)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match=r"dagger_beta: 1 value\(s\) for dagger_rounds=3"):
        TrainConfig(dagger_rounds=3, dagger_beta=(0.5,))
    with pytest.raises(ValueError, match=r"dagger_beta\[1\]: must be in \[0, 1\], got 1.5"):
        TrainConfig(dagger_rounds=2, dagger_beta=(0.5, 1.5))
    for bad in ("0.3", None, True):
        with pytest.raises(ValueError, match="dagger_beta"):
            TrainConfig(dagger_beta=bad)
    assert TrainConfig(dagger_rounds=2, dagger_beta=0.2).dagger_beta == (0.2, 0.2)  # one number: every round
    assert TrainConfig.from_dict({}).dagger_beta == TrainConfig().dagger_beta  # a config without it: the default
    with pytest.raises(ValueError, match="unknown fields"):
        TrainConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_set_overrides_reach_nested_settings_and_name_bad_keys():
    cfg = apply_overrides(TrainConfig.preset_config("smoke"), ["bc.steps=7", "encoder.width=24", "control=direct",
                                                                "dagger_beta=[0.2]"])
    assert (cfg.bc.steps, cfg.encoder.width, cfg.control, cfg.dagger_beta) == (7, 24, "direct", (0.2,))
    assert cfg.pretrain.steps == TrainConfig.preset_config("smoke").pretrain.steps  # the rest untouched
    for bad, message in (("bc.stepz=3", "bc.stepz: unknown setting"), ("control=teleport", "control"),
                         ("seed.x=1", "not a group"), ("novalue", "KEY=VALUE"), ("views_near=1.5", "views_near"),
                         ("views_near=true", "views_near")):
        with pytest.raises(ValueError, match=message):
            apply_overrides(cfg, [bad])
    assert TrainConfig(servo={"xy_tol": 0.02}).servo.xy_tol == 0.02
    law = apply_overrides(cfg, ["servo.xy_tol=0.02", "servo.gain=0.5"]).servo
    assert (law.xy_tol, law.gain, law.funnel_slope) == (0.02, 0.5, cfg.servo.funnel_slope)
    for bad, message in (("servo.gain=2", "servo.gain"), ("servo.xy_tol=-1", "servo.xy_tol"),
                         ("servo.tolerance=1", "servo.tolerance: unknown setting")):
        with pytest.raises(ValueError, match=message):
            apply_overrides(cfg, [bad])
    # Options that would silently do nothing together are refused, naming the fields.
    assert apply_overrides(cfg, ["grasp_geometry=true"]).grasp_geometry
    for sets in (["grasp_geometry=true", "grasp_prior=false"], ["grasp_geometry=true", "encoder.keypoints=0"]):
        with pytest.raises(ValueError, match="grasp_geometry: needs grasp_prior"):
            apply_overrides(cfg, sets)


def test_data_from_copies_matching_collections_only(smoke_run, tmp_path):
    src, _ = smoke_run
    cfg = apply_overrides(TrainConfig.preset_config("smoke"), ["control=direct"])  # learning differs: fine
    _, run_dir = start_run(cfg, tmp_path / "ablation")
    assert reuse_collected(run_dir, cfg, src) == ["expert", "views"]
    steps = Path("data") / "expert" / "steps.csv"
    assert (run_dir / steps).read_bytes() == (src / steps).read_bytes()
    other = TrainConfig.preset_config("smoke", seed=5)
    _, run2 = start_run(other, tmp_path / "other")
    with pytest.raises(RunError, match="seed=0"):
        reuse_collected(run2, other, src)
    assert not (run2 / "data" / "expert").exists()
    # Data collected before every object's image point was recorded cannot teach the nearest-object
    # choice: refused with the way out; the "distance" choice (what such runs trained) takes it.
    import shutil

    old_src = tmp_path / "old-src"
    shutil.copytree(src, old_src)
    for stage in ("expert", "views"):
        path = old_src / "data" / stage / "steps.csv"
        rows = path.read_text().splitlines()
        keep = [i for i, c in enumerate(rows[0].split(",")) if not c.startswith("uv_obj")]
        path.write_text("\n".join(",".join(r.split(",")[i] for i in keep) for r in rows) + "\n")
    _, run3 = start_run(cfg, tmp_path / "from-old")
    with pytest.raises(RunError, match="grasp_choice=distance"):
        reuse_collected(run3, cfg, old_src)
    legacy = apply_overrides(cfg, ["encoder.grasp_choice=distance"])
    _, run4 = start_run(legacy, tmp_path / "legacy")
    assert reuse_collected(run4, legacy, old_src) == ["expert", "views"]


def test_ppo_stage_warm_starts_from_dagger_and_lands_in_policy_pt(tmp_path):
    cfg = TrainConfig.preset_config("smoke", algo="ppo", workers=1, gif_episodes=0, eval_episodes=2,
                                    eval_train_episodes=1)
    cfg, run_dir = start_run(cfg, tmp_path / "ppo")
    metrics = Trainer(cfg, run_dir, log=lambda *_: None).run_all()
    stages = run_dir.stages_done()
    assert stages["rl"]["algo"] == "ppo" and stages["rl"]["env_steps"] == cfg.rl_steps
    assert metrics["eval"]["heldout_objects"]["episodes"] == 2
    from policies.policy import GraspPolicy
    assert GraspPolicy.load(run_dir / "policy.pt") is not None


def test_run_settings_show_a_sim_tuned_run_through_its_calibration_in_sim_only():
    from policies.train import run_settings

    train = {"image_size": 64, "camera": None}
    calib = {"position": [0.8, 0.0, 0.4]}
    tuned = {"train": train, "adapt": {"sim_tuned": True, "camera": calib}}
    assert run_settings(tuned)["camera"] == calib and run_settings(tuned)["image_size"] == 64
    assert run_settings(tuned, "proxy_real") is train  # the rig is mounted off the training camera
    assert run_settings({"train": train, "adapt": {"sim_tuned": False, "camera": calib}}) is train
    assert run_settings({"train": train}) is train and train["camera"] is None  # nothing changed in place


def test_bench_fit_times_both_layouts_on_a_runs_data(smoke_run, tmp_path):
    out, _ = smoke_run
    before = {name: (out / name).read_bytes() for name in ("pretrained_policy.pt", "policy.pt")}
    proc = run("scripts/bench_fit.py", str(out), "--steps", "2", "--rounds", "2", "--threads", "1",
               "--json", str(tmp_path / "bench.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    for layout in ("nchw", "nhwc"):
        assert len(result["ms_per_step"][layout]["rounds"]) == 2
        assert result["ms_per_step"][layout]["median"] > 0
    assert len(result["ratio_nchw_over_nhwc"]["rounds"]) == 2 and "as fast" in proc.stdout
    # The run is left as it was: the bench trains in memory only.
    assert {name: (out / name).read_bytes() for name in before} == before
    bad = run("scripts/bench_fit.py", str(tmp_path))
    assert bad.returncode == 2 and "not a training run" in bad.stderr
    assert run("scripts/bench_fit.py", str(out), "--rounds", "0").returncode == 2
    # A damaged config.json is named (in a copy: the shared smoke run stays as it is).
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "config.json").write_text("{not json")
    proc = run("scripts/bench_fit.py", str(broken), "--steps", "1", "--rounds", "1")
    assert proc.returncode == 2 and f"{broken / 'config.json'}: corrupt JSON" in proc.stderr, proc.stderr[-2000:]
