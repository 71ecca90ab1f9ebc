"""Fine-tuning in simulation for a real camera's calibration (sim2real.transfer.simtune), and
adapt_run doing it when the given calibration disagrees with the run's camera."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml

from envs.camera import Camera
from envs.config import RandomizationConfig
from envs.textures import target_texture_files
from policies.encoders import EncoderSpec
from policies.policy import GraspPolicy
from sim2real.data.episodes import read_dataset
from sim2real.transfer.simtune import (
    CAMERA_BUFFERS,
    DRAW_SEED_STRIDE,
    SimTuneConfig,
    average_policies,
    interpolate_policies,
    sim_tune,
    sim_tune_draws,
    with_camera,
)

MOVED = Camera().perturbed(np.array([0.02, -0.02, 0.01]), np.array([0.03, -0.02, 0.0]), 1.03)
TINY = dict(expert_episodes=2, views_layouts=2, views_per_layout=2, dagger_episodes=2, steps=3, batch=8, workers=1,
            target_textures=4)


def tiny_config(seed=0, draws=1, source_weight=0.0):
    """``SimTuneConfig`` at TINY's sizes for ``adapt_run``, which sets the seed, draws and mix."""
    return SimTuneConfig(**TINY, seed=seed, draws=draws, source_weight=source_weight)


@pytest.fixture(scope="module")
def policy() -> GraspPolicy:
    torch.manual_seed(0)
    return GraspPolicy(EncoderSpec(image_size=32, camera=Camera().to_dict()), geometry=True).eval()


@pytest.fixture(scope="module")
def moved_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("cam") / "real_camera.yaml"
    MOVED.to_camera_info(path)
    return path


def test_with_camera_keeps_every_learned_weight_and_moves_the_geometry(policy):
    moved = with_camera(policy, MOVED)
    assert moved.spec.camera == MOVED.to_dict() and policy.spec.camera == Camera().to_dict()
    old, new = policy.state_dict(), moved.state_dict()
    for name, value in old.items():
        if name.endswith(CAMERA_BUFFERS):
            assert not torch.equal(value, new[name]), name
        else:
            assert torch.equal(value, new[name]), name
    image, proprio = torch.rand(3, 3, 32, 32), torch.tensor([[0.55, 0.02, 0.12, 0.1, 0.04]] * 3)
    # The same camera again: the very same policy.
    same = with_camera(policy, Camera())
    assert torch.equal(same(image, proprio), policy(image, proprio))
    assert not torch.equal(moved.grasp_estimate(image, proprio), policy.grasp_estimate(image, proprio))


def test_with_camera_leaves_a_policy_without_a_camera_as_it_is():
    torch.manual_seed(0)
    plain = GraspPolicy(EncoderSpec(image_size=32), geometry=True).eval()  # no prior, so no geometry either
    copy = with_camera(plain, MOVED)
    assert copy is not plain and copy.spec.camera is None
    for name, value in plain.state_dict().items():
        assert torch.equal(value, copy.state_dict()[name]), name


def test_sim_tune_collects_through_the_new_camera_and_fits(policy, moved_yaml, tmp_path):
    cfg = SimTuneConfig(**TINY)
    train_config = {"image_size": 32, "randomization": "full", "chunk_size": 2}
    frames = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3)).astype(np.uint8)
    tuned, info = sim_tune(policy, train_config, moved_yaml, cfg, tmp_path / "data", log=lambda _m: None,
                           target_images=frames)
    folder = str(tmp_path / "data" / "target_textures")
    assert info["target_textures"] == {"textures": 4, "from_images": 5, "folder": folder}
    assert len(target_texture_files(folder)) == 4
    # The fit's images took on the real frames' style (policies.augment.style_mix).
    assert info["style"] == {"from_images": 5, "probability": cfg.style_mix, "band": cfg.style_band}
    assert tuned.spec.camera == Camera.from_camera_info(moved_yaml).to_dict()
    assert not tuned.training
    changed = [n for n, p in tuned.named_parameters() if not torch.equal(p, policy.state_dict()[n])]
    assert changed, "the fit changed no weight"
    assert set(info["collected"]) == {"expert", "views", "dagger"} and info["rows"] > 0
    assert len(info["history"]) > 0
    for mode in ("expert", "views", "dagger"):
        ds = read_dataset(tmp_path / "data" / mode, image_size=32, load_alt=False)
        assert ds.meta["camera"] == Camera.from_camera_info(moved_yaml).to_dict()
        assert len(ds) > 0
        # Every surface textured (cfg.texture_probability 1), the rest of the run's randomization kept.
        rand = RandomizationConfig.coerce(ds.meta["env"]["randomization"])
        assert (rand.visual.texture_probability.low, rand.visual.texture_probability.high) == (1.0, 1.0)
        assert rand.physics == RandomizationConfig.preset("full").physics
        # Half the textured surfaces wear the real camera's patches, kept beside the data.
        assert ds.meta["env"]["target_textures"] == folder
        assert (rand.visual.target_texture_fraction.low, rand.visual.target_texture_fraction.high) == (0.5, 0.5)
    # The policy it started from is untouched.
    assert policy.spec.camera == Camera().to_dict()


def test_average_policies_means_every_float_weight_and_statistic():
    import copy

    torch.manual_seed(0)
    one = GraspPolicy(EncoderSpec(image_size=32, camera=Camera().to_dict()), geometry=True)
    two = copy.deepcopy(one)
    two.train()(torch.rand(4, 3, 32, 32), torch.rand(4, 5))  # moves two's BatchNorm statistics and step counts
    # Copies of one policy average to exactly it (the camera's buffers too), in either order.
    for name, value in average_policies([one, copy.deepcopy(one), copy.deepcopy(one)]).state_dict().items():
        assert torch.equal(value, one.state_dict()[name]), name
    soup = average_policies([two, one])
    assert not soup.training
    moved = []
    for name, value in soup.state_dict().items():
        a, b = two.state_dict()[name], one.state_dict()[name]
        if value.is_floating_point():
            assert torch.allclose(value, (a + b) / 2), name
            if not torch.equal(a, b):
                moved.append(name)
        else:
            assert torch.equal(value, a), name  # the first's step counts, not a mean rounded down
    assert any(name.endswith("running_mean") for name in moved), moved
    with pytest.raises(ValueError, match="no policies"):
        average_policies([])
    with pytest.raises(ValueError, match="camera"):
        average_policies([one, with_camera(one, MOVED)])


def test_interpolate_policies_mixes_the_learned_weights_and_keeps_the_new_camera():
    torch.manual_seed(0)
    source = GraspPolicy(EncoderSpec(image_size=32, camera=Camera().to_dict()), geometry=True).eval()
    tuned = with_camera(source, MOVED)
    tuned.train()(torch.rand(4, 3, 32, 32), torch.rand(4, 5))  # moves its BatchNorm statistics and step counts
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.1 * torch.randn_like(p))
    # Weight 0 is the tuned policy exactly, its camera included.
    for name, value in interpolate_policies(tuned, source, 0.0).state_dict().items():
        assert torch.equal(value, tuned.state_dict()[name]), name
    mixed = interpolate_policies(tuned, source, 0.25)
    assert not mixed.training and mixed.spec.camera == MOVED.to_dict()
    moved = []
    for name, value in mixed.state_dict().items():
        a, b = tuned.state_dict()[name], source.state_dict()[name]
        if not value.is_floating_point() or name.endswith(CAMERA_BUFFERS):
            assert torch.equal(value, a), name  # the tuned policy's step counts and camera
        else:
            assert torch.allclose(value, 0.75 * a + 0.25 * b, atol=1e-6), name
            moved.append(name)
    assert any(n.endswith("running_var") for n in moved) and any(n.endswith("weight") for n in moved)
    # Weight 1: the source's learned weights seen through the tuned policy's camera.
    whole, ref = interpolate_policies(tuned, source, 1.0), with_camera(source, MOVED)
    image, proprio = torch.rand(3, 3, 32, 32), torch.tensor([[0.55, 0.02, 0.12, 0.1, 0.04]] * 3)
    assert torch.equal(whole(image, proprio), ref(image, proprio))
    with pytest.raises(ValueError, match="weight"):
        interpolate_policies(tuned, source, 1.5)
    wider = GraspPolicy(EncoderSpec(image_size=32, width=8, camera=Camera().to_dict()), geometry=True)
    with pytest.raises(ValueError, match="architecture"):
        interpolate_policies(tuned, wider, 0.25)


def test_sim_tune_draws_averages_independent_draws(policy, moved_yaml, tmp_path):
    """Each draw has its own seed and folder and keeps its policy; the result is their average with the
    untuned policy mixed back in (``source_weight``); only the first draw keeps its collected rows; the
    real-row scores of each draw, of the average and of the result are kept."""
    cfg = SimTuneConfig(**TINY, draws=3, seed=5)
    train_config = {"image_size": 32, "randomization": "full", "chunk_size": 2}
    seen = []

    def score(tuned):
        seen.append(tuned)
        return {"rows": 7, "grasp_loss": 0.3, "xy_err_cm_mean": float(len(seen))}

    tuned, info = sim_tune_draws(policy, train_config, moved_yaml, cfg, tmp_path / "data", score,
                                 log=lambda _m: None)
    assert [d["seed"] for d in info["draws"]] == [5, 5 + DRAW_SEED_STRIDE, 5 + 2 * DRAW_SEED_STRIDE]
    assert [d["xy_err_cm_mean"] for d in info["draws"]] == [1.0, 2.0, 3.0] and info["average"]["xy_err_cm_mean"] == 4.0
    assert info["unmixed"]["xy_err_cm_mean"] == 4.0 and info["mixed"]["xy_err_cm_mean"] == 5.0  # the 4th and 5th scores
    assert seen[4] is tuned and info["config"]["draws"] == 3 and info["source_weight"] == cfg.source_weight == 0.5
    draws = [GraspPolicy.load(tmp_path / "data" / f"draw{k}" / "policy.pt") for k in range(3)]
    # The draws differ (their own worlds and fits), and the result is their mean mixed with the untuned policy.
    assert any(not torch.equal(a, b) for a, b in zip(draws[1].parameters(), draws[2].parameters(), strict=True))
    mean = average_policies(draws)
    for name, value in seen[3].state_dict().items():
        assert torch.equal(value, mean.state_dict()[name]), name
    expected = interpolate_policies(mean, policy, cfg.source_weight)
    for name, value in tuned.state_dict().items():
        assert torch.equal(value, expected.state_dict()[name]), name
    assert tuned.spec.camera == Camera.from_camera_info(moved_yaml).to_dict()
    assert (tmp_path / "data" / "draw0" / "dagger" / "dataset.json").is_file()
    for k in (1, 2):
        assert not [p for p in (tmp_path / "data" / f"draw{k}").iterdir() if p.is_dir()], "rows kept"
    # Without real labels there is nothing to score; source_weight 0: the draws' average, unmixed.
    plain, unscored = sim_tune_draws(policy, train_config, moved_yaml, replace(cfg, draws=2, source_weight=0.0),
                                     tmp_path / "plain", None, log=lambda _m: None)
    assert unscored["average"] is None and len(unscored["draws"]) == 2 and "mixed" not in unscored
    mean = average_policies([GraspPolicy.load(tmp_path / "plain" / f"draw{k}" / "policy.pt") for k in range(2)])
    for name, value in plain.state_dict().items():
        assert torch.equal(value, mean.state_dict()[name]), name
    # One draw, mixed: scored before and after the mix; source_weight 0 leaves the draw alone.
    seen.clear()
    mixed, one = sim_tune_draws(policy, train_config, moved_yaml, replace(cfg, draws=1), tmp_path / "one", score,
                                log=lambda _m: None)
    assert "draws" not in one and one["unmixed"]["xy_err_cm_mean"] == 1.0 and one["mixed"]["xy_err_cm_mean"] == 2.0
    assert seen[1] is mixed
    alone, plain = sim_tune_draws(policy, train_config, moved_yaml, replace(cfg, draws=1, source_weight=0.0),
                                  tmp_path / "alone", score, log=lambda _m: None)
    assert "mixed" not in plain and len(seen) == 2
    # The same seed gives the same draw: the mix of the unmixed one is the mixed one.
    for name, value in interpolate_policies(alone, policy, cfg.source_weight).state_dict().items():
        assert torch.allclose(value.double(), mixed.state_dict()[name].double(), atol=1e-6), name


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": -1}, "steps"), ({"steps": 0}, "steps"), ({"views_per_layout": 0}, "views_per_layout"),
    ({"workers": 0}, "workers"), ({"dagger_beta": 2.0}, "dagger_beta"),
    ({"expert_episodes": 0, "views_layouts": 0, "dagger_episodes": 0}, "nothing to collect"), ({"lr": 0.0}, "lr"),
    ({"lr": float("inf")}, "lr"), ({"encoder_lr": float("nan")}, "encoder_lr"), ({"encoder_lr": True}, "encoder_lr"),
    ({"texture_probability": 1.5}, "texture_probability"), ({"texture_probability": -0.1}, "texture_probability"),
    ({"texture_probability": True}, "texture_probability"), ({"target_textures": -1}, "target_textures"),
    ({"target_texture_fraction": 1.5}, "target_texture_fraction"), ({"style_mix": 1.5}, "style_mix"),
    ({"style_mix": float("nan")}, "style_mix"), ({"style_band": -1}, "style_band"), ({"draws": 0}, "draws"),
    ({"source_weight": -0.1}, "source_weight"), ({"source_weight": 1.5}, "source_weight"),
    ({"source_weight": float("nan")}, "source_weight")])
def test_sim_tune_config_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimTuneConfig(**kwargs)


def test_adapt_run_sim_tunes_for_a_disagreeing_calibration(fake_run, real_dataset, moved_yaml, tmp_path,
                                                          monkeypatch):
    """--camera-info that disagrees: the report says so, the policy is tuned in simulation through it
    before the strategies (the adapted policy states the new camera), and the sim rows it collected
    stay in the adapted run; with sim_tune off only the difference is reported."""
    import sim2real.transfer.simtune as simtune
    from sim2real.transfer.adapt import AdaptConfig
    from sim2real.transfer.run import adapt_run

    monkeypatch.setattr(simtune, "SimTuneConfig", tiny_config)
    cfg = AdaptConfig(strategy="partial", compare=("zero_shot", "partial"), steps=2, batch=8, budgets=())
    summary = adapt_run(fake_run, real_dataset, tmp_path / "adapted", cfg, camera_info=moved_yaml,
                        log=lambda _m: None)
    assert summary["sim_tune"] is not None and summary["sim_tune"]["rows"] > 0
    assert "untuned_val" in summary["sim_tune"]
    # The real frames outside the held-out episodes (labelled or not) lent their surfaces.
    rows = len(read_dataset(real_dataset, image_size=32, load_alt=False))
    assert 0 < summary["sim_tune"]["target_textures"]["from_images"] < rows
    assert "fine-tuned in simulation" in summary["camera_check"]
    adapted = GraspPolicy.load(tmp_path / "adapted" / "policy.pt")
    assert adapted.spec.camera == Camera.from_camera_info(moved_yaml).to_dict()
    # Three draws (the default), measured on the real rows and averaged; the first draw's rows stay.
    tune = summary["sim_tune"]
    assert [d["draw"] for d in tune["draws"]] == [0, 1, 2] and all(d["rows"] > 0 for d in tune["draws"])
    assert tune["average"]["rows"] == tune["draws"][0]["rows"]
    tuned_data = tmp_path / "adapted" / "data" / "sim_tune"
    assert sorted(p.parent.parent.name for p in tuned_data.glob("*/dagger/dataset.json")) == ["draw0"]
    report = (tmp_path / "adapted" / "report.md").read_text()
    assert "Simulation fine-tuning" in report and "4 patches cut from" in report
    assert "the average, weight by weight, of 3 independent draws" in report and "for the average" in report
    assert "took on the style of" in report
    # The run's untuned weights mixed back in (the default share), measured on the same rows.
    assert tune["source_weight"] == 0.5 and tune["mixed"]["rows"] == tune["average"]["rows"]
    assert "untuned weights were then mixed back in" in report
    before, after = tune["average"]["xy_err_cm_mean"], tune["mixed"]["xy_err_cm_mean"]
    assert f"{before:.2f} cm before the mix, {after:.2f} cm after" in report
    spec = json.loads((tmp_path / "adapted" / "policy.json").read_text())
    assert spec["camera"] == Camera.from_camera_info(moved_yaml).to_dict()
    assert json.loads((tmp_path / "adapted" / "config.json").read_text())["adapt"]["sim_tuned"] is True

    # Without sim_tune, and a calibration with lens distortion, which nothing applies: both are said.
    distorted = tmp_path / "distorted.yaml"
    info = yaml.safe_load(moved_yaml.read_text())
    info["distortion_coefficients"]["data"] = [-0.2, 0.05, 0.0, 0.0, 0.0]
    distorted.write_text(yaml.safe_dump(info))
    off = AdaptConfig(strategy="zero_shot", compare=("zero_shot",), steps=2, batch=8, budgets=(), sim_tune=False)
    logged = []
    summary = adapt_run(fake_run, real_dataset, tmp_path / "untuned", off, camera_info=distorted, log=logged.append)
    assert summary["sim_tune"] is None and "differs" in summary["camera_check"]
    assert "lens distortion [-0.2, 0.05, 0, 0, 0] is not modelled" in summary["camera_check"]
    assert any("WARNING camera" in m and "rectified" in m for m in logged)
    assert GraspPolicy.load(tmp_path / "untuned" / "policy.pt").spec.camera == Camera().to_dict()
    assert json.loads((tmp_path / "untuned" / "config.json").read_text())["adapt"]["sim_tuned"] is False


def test_adapt_run_with_one_draw_keeps_the_single_fine_tuning_layout(fake_run, real_dataset, moved_yaml, tmp_path,
                                                                    monkeypatch):
    """--sim-tune-draws 1: one fine-tuning straight into data/sim_tune/ (as before there were draws), no
    draws in the summary or report; the strategies' simulated rows come from it, as with draws from draw0."""
    import sim2real.transfer.simtune as simtune
    from sim2real.transfer.adapt import AdaptConfig, sim_arrays
    from sim2real.transfer.run import adapt_run

    monkeypatch.setattr(simtune, "SimTuneConfig", tiny_config)
    cfg = AdaptConfig(strategy="zero_shot", compare=("zero_shot",), steps=2, batch=8, budgets=(), sim_tune_draws=1)
    summary = adapt_run(fake_run, real_dataset, tmp_path / "one", cfg, camera_info=moved_yaml, log=lambda _m: None)
    tuned = tmp_path / "one" / "data" / "sim_tune"
    assert (tuned / "dagger" / "dataset.json").is_file() and not list(tuned.glob("draw*"))
    assert "draws" not in summary["sim_tune"] and summary["sim_tune"]["rows"] > 0
    report = (tmp_path / "one" / "report.md").read_text()
    assert "independent draws" not in report
    # The one draw is mixed with the untuned policy all the same, and both are scored against it.
    tune = summary["sim_tune"]
    assert tune["source_weight"] == 0.5 and tune["unmixed"]["rows"] == tune["mixed"]["rows"] > 0
    assert f"{tune['untuned_labelled']['xy_err_cm_mean']:.2f} cm for the run's policy before the fine-tuning" in report
    camera = Camera.from_camera_info(moved_yaml).to_dict()
    rows = sim_arrays(tmp_path / "one", 50, 32, camera, 0)
    assert rows is not None and len(rows["images"]) > 0
    # With draws, the same rows are found in the first draw's folder.
    three = tmp_path / "three" / "data" / "sim_tune" / "draw0"
    three.mkdir(parents=True)
    for mode in ("expert", "views", "dagger"):
        (tuned / mode).rename(three / mode)
    found = sim_arrays(tmp_path / "three", 50, 32, camera, 0)
    assert found is not None and np.array_equal(found["images"], rows["images"])


def test_a_sim_tuned_run_is_evaluated_in_sim_through_its_calibration(fake_run, real_dataset, moved_yaml, tmp_path,
                                                                    monkeypatch):
    """Its geometry is the calibration's, so simulation renders through that camera; the proxy-real
    rig stays mounted off the training camera, and an untuned run keeps the training camera."""
    import sim2real.transfer.simtune as simtune
    from policies.train import evaluate_run
    from sim2real.transfer.adapt import AdaptConfig
    from sim2real.transfer.run import adapt_run

    monkeypatch.setattr(simtune, "SimTuneConfig", tiny_config)
    cfg = AdaptConfig(strategy="zero_shot", compare=("zero_shot",), steps=2, batch=8, budgets=())
    adapt_run(fake_run, real_dataset, tmp_path / "tuned", cfg, camera_info=moved_yaml, log=lambda _m: None)
    # zero_shot is the fine-tuning's result: the draws' average with the run's policy mixed back in.
    draws = [GraspPolicy.load(tmp_path / "tuned" / "data" / "sim_tune" / f"draw{k}" / "policy.pt") for k in range(3)]
    expected = interpolate_policies(average_policies(draws), GraspPolicy.load(fake_run / "policy.pt"),
                                    cfg.sim_tune_source_weight)
    for name, value in GraspPolicy.load(tmp_path / "tuned" / "policy.pt").state_dict().items():
        assert torch.equal(value, expected.state_dict()[name]), name
    sim = evaluate_run(tmp_path / "tuned", episodes=1, train_episodes=0, workers=1)
    assert sim["eval_protocol"]["camera"] == Camera.from_camera_info(moved_yaml).to_dict()
    assert sim["eval"]["heldout_objects"]["episodes"] == 1
    proxy = evaluate_run(tmp_path / "tuned", episodes=1, train_episodes=0, workers=1, domain="proxy_real")
    assert proxy["eval_protocol"]["camera"] == "default"
    untuned = AdaptConfig(**{**cfg.to_dict(), "sim_tune": False})
    adapt_run(fake_run, real_dataset, tmp_path / "untuned", untuned, camera_info=moved_yaml, log=lambda _m: None)
    assert evaluate_run(tmp_path / "untuned", episodes=1, train_episodes=0, workers=1)["eval_protocol"]["camera"] \
        == "default"


def test_adapt_run_names_a_bad_calibration_once(fake_run, real_dataset, moved_yaml, tmp_path):
    """A calibration that cannot be read stops adaptation before any work, naming the file (once)
    and the field; nothing is written."""
    from sim2real.data.episodes import DatasetError
    from sim2real.transfer.adapt import AdaptConfig
    from sim2real.transfer.run import adapt_run

    cfg = AdaptConfig(strategy="zero_shot", compare=("zero_shot",), steps=2, batch=8, budgets=(), sim_tune=False)
    info = yaml.safe_load(moved_yaml.read_text())
    for name, edit, field in (("no_matrix.yaml", lambda d: d.pop("camera_matrix"), "camera_matrix"),
                              ("bad_lens.yaml", lambda d: d["distortion_coefficients"].update(data=["x", 0, 0, 0, 0]),
                               r"distortion_coefficients\[0\]")):
        bad = tmp_path / name
        data = yaml.safe_load(yaml.safe_dump(info))
        edit(data)
        bad.write_text(yaml.safe_dump(data))
        with pytest.raises(DatasetError, match=field) as err:
            adapt_run(fake_run, real_dataset, tmp_path / "out", cfg, camera_info=bad, log=lambda _m: None)
        assert str(err.value).count(str(bad)) == 1
        assert not (tmp_path / "out").exists()


def test_with_texture_probability_overrides_only_the_texture_chance():
    from sim2real.transfer.simtune import with_texture_probability

    full = RandomizationConfig.preset("full")
    tuned = RandomizationConfig.coerce(with_texture_probability("full", 1.0))
    assert tuned.visual.texture_probability.low == tuned.visual.texture_probability.high == 1.0
    assert tuned.visual.camera_position_jitter == full.visual.camera_position_jitter and tuned.physics == full.physics
    # A run's own mapping keeps its other overrides and is not modified in place.
    own = {"preset": "light", "visual": {"camera_position_jitter": [0.0, 0.01]}}
    mixed = RandomizationConfig.coerce(with_texture_probability(own, 0.8))
    assert mixed.visual.texture_probability.high == 0.8 and mixed.visual.camera_position_jitter.high == 0.01
    assert own == {"preset": "light", "visual": {"camera_position_jitter": [0.0, 0.01]}}


def test_with_texture_probability_sets_the_target_share_only_when_given():
    from sim2real.transfer.simtune import with_texture_probability

    both = RandomizationConfig.coerce(with_texture_probability("full", 1.0, 0.3))
    assert both.visual.target_texture_fraction.low == both.visual.target_texture_fraction.high == 0.3
    assert "target_texture_fraction" not in with_texture_probability("full", 1.0)["visual"]


def test_sim_tune_without_real_images_takes_on_no_style_and_says_so(policy, moved_yaml, tmp_path):
    """No real frames: no patches and no style, and the log and ``info`` say so rather than the fit
    recording a style no image took on (``fit`` refuses a style without frames)."""
    cfg = SimTuneConfig(**{**TINY, "expert_episodes": 0, "dagger_episodes": 0})
    lines: list[str] = []
    _, info = sim_tune(policy, {"image_size": 32, "randomization": "full", "chunk_size": 2}, moved_yaml, cfg,
                       tmp_path / "data", log=lines.append)
    assert cfg.style_mix > 0 and info["style"] is None and "target_textures" not in info
    assert any("takes on no real style" in line for line in lines), lines
