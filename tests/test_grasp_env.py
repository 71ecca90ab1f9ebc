"""GraspEnv through gymnasium: API conformance, determinism, validation, observations, renderers."""

from __future__ import annotations

import importlib.util
import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
import envs.sim
from envs import ENV_IDS
from envs.grasp_env import GraspEnv
from envs.robot import MAX_OPENING
from envs.sim import Light, Sim

N_STEPS = 15


@pytest.fixture
def make():
    """gym.make that closes every env it made at the end of the test."""
    made = []

    def _make(env_id: str = "PandaGrasp-v0", **kwargs):
        env = gym.make(env_id, **kwargs)
        made.append(env)
        return env

    yield _make
    for env in made:
        env.close()


def _actions(n: int = N_STEPS) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, 5)).astype(np.float32)


def _assert_obs_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key


# ------------------------------------------------------------------------------- API checkers
def test_ids_are_registered():
    assert set(ENV_IDS) <= set(gym.registry)
    assert len(ENV_IDS) == len(set(ENV_IDS)) >= 2


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_env_checker(make, env_id):
    env = make(env_id, image_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker's warnings are failures here
        gym_check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_env_checker(make, env_id):
    env = make(env_id, image_size=64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env, warn=True)
    messages = [str(w.message) for w in caught]
    # The only acceptable advice: the privileged (max_objects, 11) table is not a flat vector.
    unexpected = [m for m in messages if "unconventional shape" not in m]
    assert not unexpected, unexpected


# --------------------------------------------------------------------------- observation shape
@pytest.mark.parametrize("size", [64, 32])
def test_image_size(make, size):
    env = make("PandaGrasp-v0", image_size=size)
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (size, size, 3)
    assert obs["image"].dtype == np.uint8
    assert env.observation_space["image"].shape == (size, size, 3)
    assert obs["proprio"].shape == (5,) and obs["proprio"].dtype == np.float32
    assert env.observation_space.contains(obs)
    assert obs["image"].std() > 5, "the image is (nearly) constant"
    obs, *_ = env.step(env.action_space.sample())
    assert obs["image"].shape == (size, size, 3)
    assert env.unwrapped.camera.intrinsics.width == size == env.unwrapped.camera.intrinsics.height


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_step_returns_valid_transitions(make, env_id):
    env = make(env_id, image_size=32, max_episode_steps=4, reward="dense")
    obs, info = env.reset(seed=1)
    assert info == {"is_success": False, "steps": 0}
    for t, action in enumerate(_actions(4), start=1):
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float) and np.isfinite(reward) and reward >= 0
        assert info["steps"] == t and info["is_success"] == terminated
        if terminated:
            break
    # Truncation after max_episode_steps unless the episode was a success.
    assert terminated or truncated


def test_non_finite_action_rejected(make):
    env = make("PandaGrasp-v0", image_size=32)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.array([0, np.nan, 0, 0, 1], dtype=np.float32))


def test_proprio_reports_gripper_and_pose(make):
    env = make("PandaGrasp-v0", image_size=32, randomization="none")
    obs, _ = env.reset(seed=2)
    p0 = obs["proprio"]
    assert p0[4] == pytest.approx(MAX_OPENING, abs=2e-3)  # starts open
    assert 0.15 < p0[2] < 0.35  # the start height, above the tray
    for _ in range(4):
        obs, *_ = env.step(np.array([0, 0, 0, 0, -1], dtype=np.float32))
    assert obs["proprio"][4] < 0.01  # closed on nothing
    for _ in range(3):
        obs, *_ = env.step(np.array([0, 0, 1, 0, -1], dtype=np.float32))
    assert obs["proprio"][2] > p0[2] + 0.03  # moved up


# ----------------------------------------------------------------------------------- seeding
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeded_replay_is_identical(make, env_id):
    """Two separate envs, same seed, same actions: identical observations and rewards.

    The default randomization ("full") is used so action noise, latency, frame drops and
    sensor noise must all replay too."""
    a = make(env_id, image_size=32, reward="dense")
    b = make(env_id, image_size=32, reward="dense")
    obs_a, _ = a.reset(seed=7)
    obs_b, _ = b.reset(seed=7)
    _assert_obs_equal(obs_a, obs_b)
    first = obs_a
    moved = False
    for action in _actions():
        obs_a, r_a, term_a, trunc_a, _ = a.step(action)
        obs_b, r_b, term_b, trunc_b, _ = b.step(action)
        _assert_obs_equal(obs_a, obs_b)
        assert r_a == r_b
        assert (term_a, trunc_a) == (term_b, trunc_b)
        moved |= not np.array_equal(obs_a["proprio"], first["proprio"])
        if term_a or trunc_a:
            break
    assert moved, "the actions had no effect: the replay check is vacuous"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_env_same_seed_same_first_observation(make, env_id):
    env = make(env_id, image_size=32)
    first, _ = env.reset(seed=7)
    for action in _actions(3):
        env.step(action)
    env.reset(seed=3)
    again, _ = env.reset(seed=7)
    _assert_obs_equal(first, again)


def test_different_seeds_give_different_first_images(make):
    env = make("PandaGrasp-v0", image_size=64)
    images = [env.reset(seed=s)[0]["image"] for s in (1, 2, 3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.array_equal(images[i], images[j]), (i, j)
            assert np.abs(images[i].astype(int) - images[j]).mean() > 1.0


def test_different_seeds_give_different_worlds(make):
    env = make("PandaGraspState-v0", image_size=32)
    env.reset(seed=1)
    world_1 = {n: v["object_id"] for n, v in env.unwrapped.privileged_state().items()}
    env.reset(seed=2)
    world_2 = {n: v["object_id"] for n, v in env.unwrapped.privileged_state().items()}
    assert world_1 != world_2


def test_unseeded_resets_reuse_world_until_refresh(make):
    env = make("PandaGrasp-v0", image_size=32, world_refresh=2)
    env.reset(seed=4)
    pool = {n: v["id"] for n, v in env.unwrapped.scene.pool.items()}
    env.reset()  # second episode in the same world
    assert {n: v["id"] for n, v in env.unwrapped.scene.pool.items()} == pool
    env.reset()  # world_refresh reached: a new pool is drawn
    assert {n: v["id"] for n, v in env.unwrapped.scene.pool.items()} != pool


def test_training_and_heldout_objects_are_used(make):
    train = make("PandaGraspState-v0", image_size=32, objects="train")
    heldout = make("PandaGraspState-v0", image_size=32, objects="heldout")
    train.reset(seed=0)
    heldout.reset(seed=0)
    assert all(v["id"] % 10 != 7 for v in train.unwrapped.scene.pool.values())
    assert all(v["id"] % 10 == 7 for v in heldout.unwrapped.scene.pool.values())


# -------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs, exc, words", [
    ({"image_size": 0}, ValueError, ["image_size", "0"]),
    ({"image_size": -8}, ValueError, ["image_size", "-8"]),
    ({"randomization": "extreme"}, ValueError, ["extreme"]),
    ({"randomization": {"physics": {"object_mass": [-1.0, 0.5]}}}, ValueError, ["object_mass", "-1"]),
    ({"randomization": {"visual": {"ambient": [0.9, 0.2]}}}, ValueError, ["ambient", "0.9", "0.2"]),
    ({"randomization": {"sensor": {"delay": [0, 9]}}}, ValueError, ["delay", "9"]),
    ({"randomization": {"physics": {"mass": [0.1, 0.2]}}}, ValueError, ["mass"]),
    ({"objects": "test"}, ValueError, ["objects", "test"]),
    ({"num_objects": (0, 2)}, ValueError, ["num_objects"]),
    ({"reward": "shaped"}, ValueError, ["reward", "shaped"]),
    ({"renderer": "vulkan"}, ValueError, ["renderer", "vulkan"]),
    ({"control_hz": 7.0}, ValueError, ["control_hz", "7"]),
    ({"lift_height": 0.0}, ValueError, ["lift_height", "positive", "0.0"]),
    ({"max_translation": float("nan")}, ValueError, ["max_translation", "positive", "nan"]),
    ({"sim_hz": True}, ValueError, ["sim_hz", "positive", "True"]),
    ({"camera": "/nonexistent/cam.yaml"}, FileNotFoundError, ["/nonexistent/cam.yaml"]),
])
def test_bad_config_raises_naming_field_and_value(kwargs, exc, words):
    with pytest.raises(exc) as info:
        gym.make("PandaGrasp-v0", **kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)


def test_unknown_config_field_raises():
    with pytest.raises((ValueError, TypeError), match="imagesize"):
        GraspEnv(config={"imagesize": 64})


# ------------------------------------------------------------------------ privileged variant
def test_state_observation_matches_privileged_state(make):
    env = make("PandaGraspState-v0", image_size=32)
    obs, _ = env.reset(seed=5)
    assert "image" not in obs
    assert set(obs) == {"proprio", "objects"}

    def check(obs):
        state = env.unwrapped.privileged_state()
        rows = obs["objects"]
        assert rows.shape == (env.unwrapped.config.num_objects[1], 11)
        assert rows.dtype == np.float32
        assert 1 <= len(state) <= len(rows)
        for k, info in enumerate(state.values()):
            assert rows[k, 0] == 1.0
            assert np.allclose(rows[k, 1:4], info["position"], atol=1e-6)
            assert np.allclose(rows[k, 4:8], info["orientation"], atol=1e-6)
            assert np.allclose(rows[k, 8:11], info["extents"], atol=1e-6)
            # Objects lie in the tray.
            assert 0.3 < info["position"][0] < 0.8 and abs(info["position"][1]) < 0.25
        assert np.all(rows[len(state):] == 0)

    check(obs)
    for action in _actions(3):
        obs, *_ = env.step(action)
    check(obs)


def test_state_and_pixel_variants_share_the_world(make):
    pixels = make("PandaGrasp-v0", image_size=32)
    state = make("PandaGraspState-v0", image_size=32)
    obs_p, _ = pixels.reset(seed=9)
    obs_s, _ = state.reset(seed=9)
    assert np.array_equal(obs_p["proprio"], obs_s["proprio"])
    for name, info in pixels.unwrapped.privileged_state().items():
        other = state.unwrapped.privileged_state()[name]
        assert np.allclose(info["position"], other["position"])


# ------------------------------------------------------------------------------------ render
def test_rgb_array_render(make):
    env = make("PandaGrasp-v0", image_size=32, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, np.ndarray)
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
    assert frame.std() > 5


def test_render_size_and_no_render_mode(make):
    env = make("PandaGrasp-v0", image_size=32, render_mode="rgb_array", render_size=96)
    env.reset(seed=0)
    assert env.render().shape == (96, 96, 3)
    plain = make("PandaGrasp-v0", image_size=32)
    plain.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium's checker warns that render_mode is None
        assert plain.render() is None


def test_render_is_the_clean_policy_view(make):
    """render() is the uncorrupted view of the policy camera: at image_size it equals the
    observation when sensor corruption is off."""
    env = make("PandaGrasp-v0", image_size=48, render_mode="rgb_array", render_size=48,
               randomization={"preset": "full", "sensor": {k: False for k in (
                   "noise_std", "blur_sigma", "brightness", "contrast", "saturation", "hue_shift",
                   "jpeg_quality", "drop_probability", "delay")}})
    obs, _ = env.reset(seed=0)
    assert np.array_equal(env.render(), obs["image"])


def test_bad_render_mode_raises():
    with pytest.raises(ValueError, match="render_mode"):
        GraspEnv(render_mode="video")


# --------------------------------------------------------------------------------- renderers
def test_egl_renderer(make):
    assert importlib.util.find_spec("eglRenderer") is not None
    # The default ("full") randomization enables light dimensions that EGL cannot show: it says so.
    with pytest.warns(RuntimeWarning, match="egl"):
        env = make("PandaGrasp-v0", image_size=64, renderer="egl")
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.sim.renderer == "egl"
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["image"].std() > 5
    for _ in range(3):
        obs2, *_ = env.step(np.array([0, 0, -1, 0, 1], dtype=np.float32))
    assert not np.array_equal(obs["image"], obs2["image"])  # a live view, not a stale frame


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def test_egl_worlds_do_not_leak_and_keep_rendering(make, capfd):
    """PyBullet's EGL plugin keeps every world's meshes and textures past resetSimulation
    (bullet3 issue 4149): about 60 MB per seeded reset, which ran a proxy-real evaluation out of
    memory. A fresh client every few worlds bounds it; its banners stay off the terminal."""
    env = make("PandaGrasp-v0", image_size=64, renderer="egl", randomization="light", domain="proxy_real")
    every = envs.sim.EGL_WORLDS_PER_CLIENT
    for seed in range(every):  # one client's worth of worlds: what it keeps is now at its peak
        env.reset(seed=seed)
    before = _rss_mb()
    for seed in range(every, 4 * every):
        obs, _ = env.reset(seed=seed)
        obs, *_ = env.step(np.array([0, 0, -1, 0, 1], dtype=np.float32))
    grown = _rss_mb() - before
    assert grown < 100 * every, f"{grown:.0f} MB more after {3 * every} worlds"
    assert env.unwrapped.sim.renderer == "egl"
    assert obs["image"].std() > 5  # still a real picture on the newest client
    out, _ = capfd.readouterr()
    assert "ven =" not in out and out.count("argv[0]") <= 1  # pybullet's own banner: the first client only


def test_egl_falls_back_to_tiny_when_plugin_missing(monkeypatch):
    monkeypatch.setattr(envs.sim.importlib.util, "find_spec", lambda *args, **kwargs: None)
    with pytest.warns(RuntimeWarning, match="(?i)egl"):
        sim = Sim(renderer="egl")
    try:
        assert sim.renderer == "tiny"
        sim.create_primitive("ball", "sphere", [0.05], (0.5, 0.0, 0.0), rgba=(1, 0, 0, 1))
        from envs.camera import Camera
        cam = Camera().with_image_size(32, 32)
        image = sim.render(32, 32, cam.view_matrix(), cam.projection_matrix(), Light())
        assert image.shape == (32, 32, 3)
        assert (image[..., 0].astype(int) - image[..., 1]).max() > 100  # the red ball is drawn
    finally:
        sim.close()


def test_env_egl_fallback_still_works(monkeypatch):
    monkeypatch.setattr(envs.sim.importlib.util, "find_spec", lambda *args, **kwargs: None)
    with pytest.warns(RuntimeWarning):
        env = GraspEnv(image_size=32, renderer="egl")
    try:
        assert env.sim.renderer == "tiny"
        obs, _ = env.reset(seed=0)
        assert obs["image"].shape == (32, 32, 3)
    finally:
        env.close()


def test_unknown_sim_renderer_raises():
    with pytest.raises(ValueError, match="vulkan"):
        Sim(renderer="vulkan")


def test_close_is_idempotent():
    env = GraspEnv(image_size=32)
    env.reset(seed=0)
    env.close()
    env.close()


def test_render_alternative_restores_the_episode_appearance_unless_told_not_to(make):
    env = make(image_size=32, randomization="full", disable_env_checker=True)
    env.reset(seed=11)
    g = env.unwrapped
    own = g.render_camera(g.camera)
    # Another appearance (the caller's generator), and the env's own generators untouched.
    state = g.np_random.bit_generator.state
    alt = g.render_alternative(np.random.default_rng(0))
    assert alt.shape == own.shape and not np.array_equal(alt, own)
    assert g.np_random.bit_generator.state == state
    np.testing.assert_array_equal(g.render_camera(g.camera), own)  # restored
    # Without the restore the scene keeps the alternative colours and textures until a reset.
    g.render_alternative(np.random.default_rng(0), restore=False)
    assert not np.array_equal(g.render_camera(g.camera), own)
    env.reset(seed=11)
    np.testing.assert_array_equal(g.render_camera(g.camera), own)
