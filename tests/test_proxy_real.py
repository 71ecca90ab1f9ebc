"""The proxy-real target domain (``envs.proxy_real``): renders, reproducibility, the sim domain left
as it was, the real-camera sensor model, and the executed-grasp label of recordings."""

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401 - registers the ids
from envs.config import EnvConfig
from envs.proxy_real import RealCameraModel
from sim2real.data.record import executed_grasp

SEED = 7
ACTIONS = [np.array([0.3, 0.2, -0.5, 0.1, 1.0], np.float32), np.array([-0.2, 0.1, -0.5, 0.0, 1.0], np.float32),
           np.array([0.0, 0.0, -0.3, -0.2, -1.0], np.float32)]


def rollout(seed: int = SEED, **kwargs) -> dict:
    env = gym.make("PandaGrasp-v0", disable_env_checker=True, **kwargs)
    try:
        obs, _ = env.reset(seed=seed)
        images, proprio = [obs["image"]], [obs["proprio"]]
        for a in ACTIONS:
            obs, reward, terminated, truncated, info = env.step(a)
            images.append(obs["image"])
            proprio.append(obs["proprio"])
        return {"images": np.stack(images), "proprio": np.stack(proprio), "renderer": env.unwrapped.sim.renderer,
                "info": info, "space": env.observation_space["image"]}
    finally:
        env.close()


@pytest.fixture(scope="module")
def renders() -> dict:
    return {"proxy": rollout(domain="proxy_real"), "proxy_again": rollout(domain="proxy_real"),
            "sim": rollout(), "sim_explicit": rollout(domain="sim")}


def test_proxy_real_resets_and_steps_with_pixel_observations(renders):
    r = renders["proxy"]
    assert r["images"].shape == (len(ACTIONS) + 1, 64, 64, 3) and r["images"].dtype == np.uint8
    assert r["space"].shape == (64, 64, 3)
    assert r["proprio"].shape == (len(ACTIONS) + 1, 5) and np.isfinite(r["proprio"]).all()
    assert "is_success" in r["info"]
    assert r["renderer"] == "egl"  # the proxy-real domain always renders with EGL
    assert r["images"].std() > 10  # a real picture, not a blank frame
    # The hand moved: observations follow the actions.
    assert np.abs(r["proprio"][-1, :3] - r["proprio"][0, :3]).max() > 0.01


def test_proxy_real_images_differ_clearly_from_the_sim_domain(renders):
    diff = np.abs(renders["proxy"]["images"].astype(np.int16) - renders["sim"]["images"].astype(np.int16))
    assert diff.mean() > 20, diff.mean()


def test_proxy_real_is_reproducible_for_a_seed(renders):
    np.testing.assert_array_equal(renders["proxy"]["images"], renders["proxy_again"]["images"])
    np.testing.assert_array_equal(renders["proxy"]["proprio"], renders["proxy_again"]["proprio"])


def test_proxy_real_seeds_give_different_episodes(renders):
    other = rollout(seed=SEED + 1, domain="proxy_real")
    diff = np.abs(other["images"][0].astype(np.int16) - renders["proxy"]["images"][0].astype(np.int16))
    assert diff.mean() > 5


def test_sim_domain_is_unchanged_by_the_proxy_domain(renders):
    sim = renders["sim"]
    assert sim["renderer"] == "tiny"
    np.testing.assert_array_equal(sim["images"], renders["sim_explicit"]["images"])
    np.testing.assert_array_equal(sim["proprio"], renders["sim_explicit"]["proprio"])
    # And a sim env created after proxy-real ones in the same process renders the same again.
    again = rollout()
    np.testing.assert_array_equal(sim["images"], again["images"])


def test_unknown_domain_is_rejected_by_name():
    with pytest.raises(ValueError, match="domain") as info:
        EnvConfig(domain="bogus")
    assert "bogus" in str(info.value)
    with pytest.raises(ValueError, match="bogus"):
        gym.make("PandaGrasp-v0", disable_env_checker=True, domain="bogus")


# ----------------------------------------------------------------------- sensor model
def _proxy_episode(without: tuple[str, ...] = (), seed: int = SEED):
    """The first image and the drawn episode parameters of one proxy-real episode."""
    env = gym.make("PandaGrasp-v0", disable_env_checker=True, domain="proxy_real", proxy_without=without)
    try:
        obs, _ = env.reset(seed=seed)
        u = env.unwrapped
        return obs["image"], u.params, u.sim.renderer, u.base_camera
    finally:
        env.close()


@pytest.fixture(scope="module")
def whole():
    return _proxy_episode()


@pytest.mark.parametrize("part", ["renderer", "textures", "light", "camera", "sensor"])
def test_leaving_out_a_proxy_part_changes_that_part_only(whole, part):
    """Each part left out is as in the simulator and the others stay the proxy domain's, in the same
    episode (every random number is drawn either way)."""
    image, params, renderer, base = whole
    image2, params2, renderer2, _ = _proxy_episode((part,))
    changed = {
        "renderer": renderer2 != renderer,
        "textures": params2.textures != params.textures,
        "light": params2.light != params.light,
        "camera": params2.camera != params.camera,
        "sensor": [type(c).__name__ for c in params2.sensor.pieces] != [type(c).__name__ for c in params.sensor.pieces],
    }
    assert changed.pop(part), part
    assert not any(changed.values()), changed
    assert not np.array_equal(image, image2)
    if part == "renderer":
        assert (renderer, renderer2) == ("egl", "tiny")
    if part == "textures":
        assert not any(t.startswith("real_") for t in params2.textures.values())
        assert all(params.textures[s].startswith("real_") for s in ("tray", "table", "floor"))
    if part == "camera":  # the training's jitter around the calibration, not the rig's fixed error
        from envs.proxy_real import ProxyRealDomain

        assert params.camera == ProxyRealDomain().camera(base)
        assert np.abs(np.subtract(params2.camera.position, base.position)).max() <= 0.03 + 1e-9
    if part == "sensor":
        assert not any(type(c).__name__ == "RealCameraModel" for c in params2.sensor.pieces)


def test_proxy_without_is_validated_by_name():
    with pytest.raises(ValueError, match="proxy_without"):
        EnvConfig(domain="proxy_real", proxy_without=("lens",))
    with pytest.raises(ValueError, match="only with domain='proxy_real'"):
        EnvConfig(proxy_without=("camera",))
    config = EnvConfig(domain="proxy_real", proxy_without=["camera", "sensor"])
    assert config.proxy_without == ("camera", "sensor")
    assert EnvConfig.from_dict(config.to_dict()) == config


def test_real_camera_model_changes_an_image_and_keeps_shape_and_dtype():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    out = RealCameraModel()(image, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(np.int16) - image.astype(np.int16)).mean() > 5
    np.testing.assert_array_equal(out, RealCameraModel()(image, np.random.default_rng(1)))  # seeded noise


def test_vignetting_darkens_the_corners_of_a_flat_image():
    grey = np.full((64, 64, 3), 128, np.uint8)

    def corners_and_centre(model):
        out = model(grey, np.random.default_rng(0)).astype(np.float32)
        corners = np.concatenate([out[:6, :6], out[:6, -6:], out[-6:, :6], out[-6:, -6:]]).mean(axis=(0, 1))
        return corners, out[26:38, 26:38].mean(axis=(0, 1))

    corners, centre = corners_and_centre(RealCameraModel())
    assert (corners < centre - 20).all(), (corners, centre)
    corners, centre = corners_and_centre(RealCameraModel(vignetting=0.0))
    assert (np.abs(corners - centre) < 6).all(), (corners, centre)  # the fall-off is the vignetting's


def test_lens_distortion_is_barrel_as_documented():
    """``RealCameraModel.k1``: "negative = barrel" (and the module docstring: "barrel lens
    distortion"). Under barrel distortion magnification falls with the distance from the centre, so
    an off-centre feature is imaged *closer* to the centre (r_d = r_u (1 + k1 r_u^2) < r_u)."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 50:52] = 255  # a vertical bar, centroid at x = 50.5 (centre 31.5)
    model = RealCameraModel(k1=-0.18, vignetting=0.0, white_balance=(1.0, 1.0, 1.0), gamma=1.0, shot=0.0, read=0.0)
    row = model(image, np.random.default_rng(0))[32, :, 0].astype(np.float64)
    centroid = (row * np.arange(64)).sum() / row.sum()
    assert centroid < 50.5 - 0.5, f"the bar moved outwards to x={centroid:.2f} (pincushion), not inwards"


# --------------------------------------------------------------------- executed grasp
def _episode(grip: list[float]) -> tuple[np.ndarray, np.ndarray]:
    t = len(grip)
    actions = np.zeros((t, 5), np.float32)
    actions[:, 4] = grip
    after = np.arange(t * 5, dtype=np.float64).reshape(t, 5) / 10.0  # a distinct pose after every step
    return actions, after


def test_executed_grasp_is_the_pose_after_the_last_closing_onset():
    actions, after = _episode([1, 1, -1, -1, 1, 1, -1, -1, -1, 1])
    k, pose = executed_grasp(actions, after)
    assert k == 6
    np.testing.assert_allclose(pose, after[6, :4])
    assert pose.dtype == np.float32 and pose.shape == (4,)


def test_executed_grasp_counts_a_close_from_the_first_step_and_zero_as_open():
    actions, after = _episode([-1, -1, -1])
    assert executed_grasp(actions, after)[0] == 0
    actions, after = _episode([1, 0, -0.5, 0, 1])  # 0 is not a close command: one onset, at 2
    assert executed_grasp(actions, after)[0] == 2


def test_executed_grasp_is_none_when_the_gripper_never_closed():
    actions, after = _episode([1, 1, 0.5, 0, 1])
    assert executed_grasp(actions, after) is None


def test_proxy_real_texture_pool_is_cached_once_and_a_failed_write_names_the_file(tmp_path, monkeypatch):
    from envs import proxy_real, textures

    monkeypatch.setenv("SIM2REAL_CACHE", str(tmp_path))
    proxy_real.texture_files.cache_clear()
    monkeypatch.setattr(textures.cv2, "imwrite", lambda path, image: False)  # a full disk, say
    try:
        with pytest.raises(OSError, match=r"sim2real_proxy_.*\.png: could not write a proxy-real texture"):
            proxy_real.texture_files()
        assert not any((tmp_path).rglob("*.png"))  # no half-written or temporary file left behind
        monkeypatch.undo()
        monkeypatch.setenv("SIM2REAL_CACHE", str(tmp_path))
        proxy_real.texture_files.cache_clear()
        paths = proxy_real.texture_files()
        assert paths and all(p.startswith(str(tmp_path)) for p in paths)
        assert sorted(str(p) for p in tmp_path.rglob("*.png")) == sorted(paths)  # only the pool, once
    finally:
        proxy_real.texture_files.cache_clear()  # the other tests' pool lives in their own cache
