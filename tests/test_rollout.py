"""Parallel rollouts: seeded collection is reproducible, whatever the number of workers."""

import numpy as np
import pytest

from policies.policy import GraspPolicy
from policies.rollout import RolloutPool, make_chunks, policy_bytes, run_chunk

ENV = {"image_size": 32, "randomization": "full", "objects": "train", "max_episode_steps": 12}


def test_seeded_collection_is_reproducible_across_worker_counts():
    chunks = make_chunks(3, 3, 2, tag=1, env_kwargs=ENV, mode="expert", alt_prob=0.5)
    assert [c.episodes for c in chunks] == [2, 1]
    in_process = [r for c in chunks for r in run_chunk(c)]
    with RolloutPool(2) as pool:
        parallel = [r for rs in pool.map(chunks) for r in rs]
    assert len(in_process) == len(parallel) == 3
    for a, b in zip(in_process, parallel, strict=True):
        assert a.steps == b.steps and a.success == b.success and a.objects == b.objects
        np.testing.assert_array_equal(a.episode.images, b.episode.images)
        np.testing.assert_array_equal(a.episode.action, b.episode.action)
        np.testing.assert_array_equal(a.episode.has_alt, b.episode.has_alt)
    other = make_chunks(4, 1, 2, tag=1, env_kwargs=ENV, mode="expert")
    assert not np.array_equal(run_chunk(other[0])[0].episode.images[0], in_process[0].episode.images[0])


def test_dagger_records_expert_labels_for_student_states():
    policy = GraspPolicy()
    chunk = make_chunks(0, 1, 1, tag=2, env_kwargs=ENV, mode="dagger", beta=0.0, policy=policy_bytes(policy),
                        alt_prob=1.0)[0]
    (r,) = run_chunk(chunk)
    ep = r.episode
    assert len(ep) == r.steps
    assert np.all(np.isfinite(ep.expert_action)) and np.all(np.abs(ep.expert_action) <= 1)
    # beta = 0: every executed action is the student's, not the expert's label.
    expected = policy.act(ep.images, ep.proprio)
    np.testing.assert_allclose(ep.action, expected, atol=1e-5)
    assert ep.has_alt.all() and not np.array_equal(ep.images_alt[0], ep.images[0])
    assert np.all(np.isfinite(ep.object)) and np.all(np.isfinite(ep.grasp))


def test_image_points_are_where_the_frames_own_camera_sees_the_grasp_and_the_hand():
    import gymnasium as gym

    import envs  # noqa: F401
    from envs.camera import Camera
    from policies.imitation import keypoint_pixels
    from policies.rollout import image_points

    env = gym.make("PandaGrasp-v0", disable_env_checker=True, **ENV)
    env.reset(seed=11)
    genv = env.unwrapped
    cam = genv.params.camera
    hand = np.array([0.52, -0.05, 0.12])  # in view (at reset the hand is above the image)
    grasp = np.array([0.55, 0.02, 0.03])
    pts = image_points(cam, grasp, hand)
    size = ENV["image_size"]
    expected = cam.with_image_size(size, size).project(np.stack([grasp, hand])) / size
    np.testing.assert_allclose(pts, expected.ravel(), atol=1e-5)
    assert np.isnan(image_points(cam, None, hand)[:2]).all() and np.isfinite(image_points(cam, None, hand)[2:]).all()
    assert np.isnan(image_points(cam, np.array([5.0, 5.0, 0.0]), hand)[:2]).all()  # far outside the image
    # Under full randomization the jittered camera is not the nominal one: the recorded points
    # differ from a projection through the nominal camera (what keypoint targets used to be).
    nominal = keypoint_pixels(Camera().to_dict(), size, np.r_[grasp, 0.0][None], np.r_[hand, 0, 0][None])[0]
    assert np.abs(pts.reshape(2, 2) * size - nominal).max() > 0.1
    env.close()
    # Collection records them for every step (expert) and every view, the alternative ones with
    # the alternative render's camera.
    (r,) = run_chunk(make_chunks(6, 1, 1, tag=3, env_kwargs=ENV, mode="views", views=3)[0])
    assert r.episode.image_points.shape == (3, 4) and np.isfinite(r.episode.image_points[:, 2:]).all()
    (r,) = run_chunk(make_chunks(6, 1, 1, tag=1, env_kwargs=ENV, mode="expert")[0])
    assert np.isfinite(r.episode.image_points[:, 2:]).mean() > 0.5


def test_object_points_are_every_object_where_the_frames_camera_sees_it_and_the_grasp_is_one_of_them():
    import gymnasium as gym

    import envs  # noqa: F401
    from envs.expert import ScriptedExpert, grasp_height
    from policies.rollout import object_points

    env = gym.make("PandaGrasp-v0", disable_env_checker=True, **{**ENV, "num_objects": (3, 3)})
    env.reset(seed=5)
    genv = env.unwrapped
    cam = genv.params.camera
    pts = object_points(cam, genv)
    assert pts.shape == (8,) and np.isnan(pts[6:]).all()  # three objects of at most four
    size = ENV["image_size"]
    for k, name in enumerate(genv.scene.active):
        low, high = genv.sim.aabb(name)
        centre = np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, grasp_height(low, high)])
        expected = cam.with_image_size(size, size).project(centre[None])[0] / size
        np.testing.assert_allclose(pts[2 * k:2 * k + 2], expected, atol=1e-5)
    # The expert's first grasp is at one of these points (its box centre, its first height).
    expert = ScriptedExpert(genv, plan=False)
    expert.act()
    grasp_uv = cam.with_image_size(size, size).project(expert.target_labels()[1][None, :3].astype(float))[0] / size
    assert np.linalg.norm(pts[:6].reshape(3, 2) - grasp_uv, axis=1).min() < 1e-3
    env.close()
    # More objects than the format has columns for: all unknown, none called background.
    crowded = gym.make("PandaGrasp-v0", disable_env_checker=True, **{**ENV, "num_objects": (5, 5)})
    crowded.reset(seed=5)
    assert len(crowded.unwrapped.scene.active) == 5
    assert np.isnan(object_points(crowded.unwrapped.params.camera, crowded.unwrapped)).all()
    crowded.close()
    (r,) = run_chunk(make_chunks(6, 1, 1, tag=3, env_kwargs=ENV, mode="views", views=3)[0])
    assert r.episode.object_points.shape == (3, 8) and np.isfinite(r.episode.object_points[:, :2]).all()


@pytest.mark.parametrize("near", [0.0, 1.0])
def test_near_views_put_the_gripper_low_beside_an_object(near):
    from policies.rollout import NEAR_RADIUS, NEAR_Z

    chunks = make_chunks(5, 4, 4, tag=4, env_kwargs=ENV, mode="views", views=6, views_near=near)
    eps = [r.episode for c in chunks for r in run_chunk(c)]
    proprio = np.concatenate([e.proprio for e in eps])
    objects = np.concatenate([e.object for e in eps])  # the labelled (nearest) object per view
    dist = np.linalg.norm(proprio[:, :2] - objects[:, :2], axis=1)
    low = (proprio[:, 2] > NEAR_Z[0] - 0.01) & (proprio[:, 2] < NEAR_Z[1] + 0.01) & (dist < NEAR_RADIUS + 0.01)
    assert len(proprio) == 24
    # All views near an object when asked; anywhere above the tray (z up to 0.25 m) otherwise.
    assert low.all() if near == 1.0 else low.mean() < 0.7


def test_views_are_the_same_without_restoring_the_layouts_appearance(monkeypatch):
    """View collection skips the episode-appearance restore after each alternative render (every
    later view draws a whole new appearance): the data must be what restoring every time gives."""
    from envs.grasp_env import GraspEnv

    chunk = make_chunks(7, 3, 3, tag=5, env_kwargs=ENV, mode="views", views=4, alt_prob=0.5)[0]
    lazy = [r.episode for r in run_chunk(chunk)]
    original = GraspEnv.render_alternative
    monkeypatch.setattr(GraspEnv, "render_alternative",
                        lambda self, rng, return_camera=False, restore=True: original(self, rng, return_camera))
    restored = [r.episode for r in run_chunk(chunk)]
    assert sum(int(e.has_alt.sum()) for e in lazy) > 0
    for a, b in zip(lazy, restored, strict=True):
        for field in ("images", "images_alt", "proprio", "expert_action", "image_points", "object_points"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def test_eval_needs_a_policy():
    chunk = make_chunks(0, 1, 1, tag=3, env_kwargs=ENV, mode="eval")[0]
    with pytest.raises(ValueError, match="needs a policy"):
        run_chunk(chunk)


def test_a_calibrated_camera_file_changes_what_the_policy_sees(tmp_path):
    from envs.camera import Camera
    from policies.train import TrainConfig

    path = tmp_path / "cam.yaml"
    Camera().perturbed(np.array([0.0, 0.1, 0.05]), np.zeros(3), 1.1).to_camera_info(path)
    cfg = TrainConfig.preset_config("smoke", camera=str(path), randomization="none")
    kw = {**cfg.env_kwargs("train"), "image_size": 32, "max_episode_steps": 2}
    assert kw["camera"] == str(path)
    ours = run_chunk(make_chunks(0, 1, 1, tag=1, env_kwargs=kw, mode="expert")[0])[0]
    kw.pop("camera")
    default = run_chunk(make_chunks(0, 1, 1, tag=1, env_kwargs=kw, mode="expert")[0])[0]
    assert not np.array_equal(ours.episode.images[0], default.episode.images[0])
