"""GraspPolicy and its training: BC overfits a tiny dataset; save -> load gives identical actions."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.camera import Camera
from envs.expert import ScriptedExpert
from policies.encoders import KEYPOINTS, EncoderSpec
from policies.imitation import (
    Buffer,
    FitConfig,
    channels_last,
    fit,
    grasp_loss,
    keypoint_loss,
    keypoint_pixels,
    losses,
    make_batch,
    nhwc,
)
from policies.policy import (
    GRASP_SCALE,
    MAX_TRANSLATION,
    GraspGeometry,
    GraspHead,
    GraspPolicy,
    ServoLaw,
    grasp_targets,
    servo_action,
)
from sim2real.data.episodes import Episode


def tiny_buffer(n=16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)
    actions = np.concatenate([rng.uniform(-0.9, 0.9, (n, 4)), rng.choice([-1.0, 1.0], (n, 1))], 1)
    ep = Episode(images=images, proprio=rng.normal(0, 0.05, (n, 5)).astype(np.float32) + [0.55, 0, 0.15, 0, 0.04],
                 expert_action=actions.astype(np.float32), object=rng.normal(size=(n, 4)).astype(np.float32),
                 grasp=rng.normal(size=(n, 4)).astype(np.float32), success=True)
    buf = Buffer()
    buf.add_episode(ep)
    return buf, actions


def test_bc_overfits_a_tiny_dataset():
    torch.manual_seed(0)
    buf, actions = tiny_buffer()
    policy = GraspPolicy(control="direct")
    cfg = FitConfig(steps=300, batch=16, lr=3e-3, encoder_lr=3e-3, shift=0, jitter=0.0, weights={"action": 1.0})
    history = fit(policy, buf, cfg, seed=0)
    assert history[-1]["action"] < 0.25 * history[0]["action"]
    pred = policy.act(buf.arrays["images"], buf.arrays["proprio"])
    assert np.mean(np.abs(pred[:, :4] - actions[:, :4])) < 0.15
    assert np.mean(np.sign(pred[:, 4]) == actions[:, 4]) == 1.0


def test_save_load_gives_identical_actions(tmp_path):
    buf, _ = tiny_buffer(n=4)
    policy = GraspPolicy()
    fit(policy, buf, FitConfig(steps=3, batch=4), seed=0)  # move BatchNorm statistics off their defaults
    policy.save(tmp_path / "p.pt")
    loaded = GraspPolicy.load(tmp_path / "p.pt")
    a = policy.act(buf.arrays["images"], buf.arrays["proprio"])
    b = loaded.act(buf.arrays["images"], buf.arrays["proprio"])
    np.testing.assert_array_equal(a, b)
    single = loaded.act(buf.arrays["images"][0], buf.arrays["proprio"][0])
    assert single.shape == (5,) and single.dtype == np.float32


def test_fit_takes_on_a_target_cameras_style_only_when_asked():
    """style_images at style 0 draw no random number (the fit is what it was); at style > 0 the
    batches change; images of another size are refused, naming both shapes."""
    buf, _ = tiny_buffer(n=8)
    frames = np.full((3, 64, 64, 3), (200, 120, 40), np.uint8)  # a warm camera
    def fitted(cfg, **kw):
        torch.manual_seed(0)
        policy = GraspPolicy()
        fit(policy, buf, cfg, seed=0, **kw)
        return policy.state_dict()
    plain = fitted(FitConfig(steps=2, batch=4))
    off = fitted(FitConfig(steps=2, batch=4, style=0.0), style_images=frames)
    on = fitted(FitConfig(steps=2, batch=4, style=1.0), style_images=frames)
    assert all(torch.equal(plain[k], off[k]) for k in plain)
    assert not all(torch.equal(plain[k], on[k]) for k in plain)
    with pytest.raises(ValueError, match=r"style=0.5 needs style_images"):
        fit(GraspPolicy(), buf, FitConfig(steps=1, batch=4, style=0.5))  # style asked for, no frames
    with pytest.raises(ValueError, match=r"style images of shape \(32, 32, 3\)"):
        fit(GraspPolicy(), buf, FitConfig(steps=1, batch=4, style=0.5), style_images=frames[:, :32, :32])
    for bad, field in (({"style": 1.5}, "fit style"), ({"style_band": -1}, "fit style_band")):
        with pytest.raises(ValueError, match=field):
            FitConfig(**bad)


def test_channels_last_training_computes_what_nchw_does_and_gives_the_layout_back():
    buf, _ = tiny_buffer(n=8)
    cfg = FitConfig(steps=1, batch=8, shift=0, jitter=0.0)
    batch = make_batch(buf.arrays, np.arange(8), cfg)
    batch["images"] = batch["images"].contiguous()
    assert nhwc(batch)["images"].is_contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    policy = GraspPolicy()
    reference = GraspPolicy()
    reference.load_state_dict(policy.state_dict())
    policy.train(), reference.train()
    expected = losses(reference, batch, cfg.weights)["total"]
    expected.backward()
    conv = policy.encoder.blocks[0][0].weight
    with channels_last(policy):
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        total = losses(policy, nhwc(batch), cfg.weights)["total"]
        total.backward()
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(policy.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
    # Checkpoints, export and rollouts get the default layout back, from fit too.
    assert all(p.is_contiguous() for p in policy.parameters())
    fit(policy, buf, FitConfig(steps=2, batch=4), seed=0)
    assert all(p.is_contiguous() for p in policy.parameters())
    # (Weights after several Adam steps are not compared: Adam scales a near-zero gradient to a full
    # step, so rounding-level differences in it become differences of one learning rate.)
    a = GraspPolicy()
    fit(a, buf, FitConfig(steps=1, batch=4), seed=1, layout="nchw")
    assert all(p.is_contiguous() for p in a.parameters())
    with pytest.raises(ValueError, match="layout"):
        fit(a, buf, FitConfig(steps=1, batch=4), layout="NHWC!")


def test_losses_skip_rows_without_labels():
    buf, _ = tiny_buffer(n=8)
    buf.arrays["expert_action"][:] = np.nan  # e.g. unlabelled real images
    policy = GraspPolicy()
    hist = fit(policy, buf, FitConfig(steps=2, batch=8, weights={"action": 1.0, "object": 1.0}), seed=0)
    assert np.isfinite(hist[-1]["total"]) and hist[-1]["action"] == 0.0


def test_keypoint_pixels_project_grasp_point_and_gripper():
    cam = Camera()
    grasp = np.array([[0.55, 0.0, 0.02, 0.0], [np.nan] * 4], np.float32)
    proprio = np.array([[0.55, 0.0, 0.25, 0.0, 0.08], [0.5, 0.1, 0.2, 0.0, 0.08]], np.float32)
    kp = keypoint_pixels(cam.to_dict(), 64, grasp, proprio)
    assert kp.shape == (2, len(KEYPOINTS), 2)
    small = cam.with_image_size(64, 64)
    np.testing.assert_allclose(kp[0, 0], small.project(grasp[:1, :3].astype(float))[0], atol=1e-4)
    np.testing.assert_allclose(kp[1, 1], small.project(proprio[1:, :3].astype(float))[0], atol=1e-4)
    assert np.isnan(kp[1, 0]).all()  # no grasp label -> no target
    assert np.isnan(keypoint_pixels(None, 64, grasp, proprio)).all()


def test_recorded_image_points_are_the_keypoint_targets_where_a_row_has_them(tmp_path):
    from sim2real.data.episodes import EpisodeWriter, read_dataset

    grasp = np.array([[0.55, 0.0, 0.02, 0.0]] * 2, np.float32)
    proprio = np.array([[0.5, 0.1, 0.2, 0.0, 0.08]] * 2, np.float32)
    points = np.array([[0.25, 0.5, 0.75, 0.125], [np.nan] * 4], np.float32)  # the second row: unknown
    ep = Episode(images=np.zeros((2, 64, 64, 3), np.uint8), proprio=proprio, grasp=grasp, image_points=points)
    EpisodeWriter(tmp_path / "d", meta={"camera": Camera().to_dict()}).append(ep)
    buf, mem = Buffer(), Buffer()
    buf.add_dataset(read_dataset(tmp_path / "d"))
    mem.add_episode(ep)
    nominal = keypoint_pixels(Camera().to_dict(), 64, grasp, proprio)
    for kp in (buf.arrays["keypoints"], mem.arrays["keypoints"][:1]):
        np.testing.assert_allclose(kp[0], [[16, 32], [48, 8]], atol=1e-3)  # fractions x 64 px
    np.testing.assert_allclose(buf.arrays["keypoints"][1], nominal[1], atol=1e-4)  # else the dataset's camera
    wide = Buffer()  # fractions of the width for u, of the height for v
    wide.add_episode(Episode(images=np.zeros((2, 48, 64, 3), np.uint8), proprio=proprio, grasp=grasp,
                             image_points=points))
    np.testing.assert_allclose(wide.arrays["keypoints"][0], [[16, 24], [48, 6]], atol=1e-3)


def test_keypoint_loss_is_low_only_where_the_map_peaks_at_the_target():
    policy = GraspPolicy()
    n, h = 3, 16
    pixels = torch.tensor([[[8.5, 20.5], [40.5, 8.5]]] * n)  # centres of cells (2, 5) and (10, 2)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij")

    def peaked(cells):  # log of a unit Gaussian around each cell: the loss's own optimum
        logits = torch.zeros((n, policy.encoder.keypoint_maps.out_channels, h, h))
        for k, (cx, cy) in enumerate(cells):
            logits[:, k] = -((xs - cx) ** 2 + (ys - cy) ** 2) / 2.0
        return logits
    right = keypoint_loss(policy, peaked([(2, 5), (10, 2)]), pixels)
    wrong = keypoint_loss(policy, peaked([(12, 12), (1, 14)]), pixels)
    assert right < 3.0 < 20.0 < wrong  # right = entropy of the target, log(2 pi e) ~ 2.84
    # targets outside the image or unknown are ignored, not counted as errors
    off = torch.tensor([[[-40.0, 20.0], [np.nan, np.nan]]] * n)
    assert keypoint_loss(policy, peaked([(12, 12), (1, 14)]), off) == 0.0


def test_objects_loss_wants_evidence_at_every_object_and_reads_recorded_points(tmp_path):
    from policies.imitation import objects_loss
    from sim2real.data.episodes import EpisodeWriter, read_dataset

    n, h = 2, 16

    def evidence(cells):  # sigmoid logits: +8 at the given cells, -8 elsewhere
        ev = torch.full((n, h, h), -8.0)
        for cx, cy in cells:
            ev[:, cy, cx] = 8.0
        return ev
    nan = float("nan")
    pixels = torch.tensor([[[8.5, 20.5], [40.5, 8.5], [nan, nan], [nan, nan]]] * n)  # cells (2, 5), (10, 2)
    both = objects_loss(evidence([(2, 5), (10, 2)]), pixels)
    one = objects_loss(evidence([(2, 5)]), pixels)
    elsewhere = objects_loss(evidence([(13, 13)]), pixels)
    assert both < one < elsewhere  # every object, not the first one only
    # Rows without any known object point are unknown, not "empty": no loss at all.
    assert objects_loss(evidence([(13, 13)]), torch.full((n, 4, 2), nan)) == 0.0
    # Buffer rows carry the recorded points as pixels, from an episode and from a dataset folder.
    points = np.full((2, 8), np.nan, np.float32)
    points[0, :4] = [0.25, 0.5, 0.75, 0.125]
    ep = Episode(images=np.zeros((2, 64, 64, 3), np.uint8), proprio=np.zeros((2, 5), np.float32),
                 object_points=points)
    EpisodeWriter(tmp_path / "d").append(ep)
    buf, mem = Buffer(), Buffer()
    buf.add_dataset(read_dataset(tmp_path / "d"))
    mem.add_episode(ep)
    for b in (buf, mem):
        got = b.arrays["object_pixels"]
        assert got.shape == (2, 4, 2) and np.isnan(got[1]).all() and np.isnan(got[0, 2:]).all()
        np.testing.assert_allclose(got[0, :2], [[16, 32], [48, 8]], atol=1e-3)


def _prior_policy(choice="nearest_object"):
    return GraspPolicy(EncoderSpec(camera=Camera().to_dict(), grasp_choice=choice), geometry=True).eval()


def test_the_nearest_object_prior_picks_the_nearest_detection_however_far_it_is():
    policy = _prior_policy()
    prior = policy.encoder.prior
    h = prior.side
    cell_xy = prior.cell_xy.reshape(h, h, 2)
    temperature = torch.tensor(1.0)
    hand = torch.tensor([[0.55, 0.0, 0.2, 0.0, 0.08]])

    def cell_at(x, y):  # the map cell whose tray point is nearest (x, y)
        k = int(((prior.cell_xy - torch.tensor([x, y])) ** 2).sum(dim=1).argmin())
        return divmod(k, h)

    def peak(evidence):
        return divmod(int(prior(evidence[None], hand, temperature).flatten().argmax()), h)
    background = torch.full((h, h), -6.0)  # p ~ 0.0025 per cell
    far, near = cell_at(0.55, 0.14), cell_at(0.55, -0.07)
    ev = background.clone()
    ev[far] = 4.0
    ev[cell_at(0.56, 0.02)] = -2.0  # a weak spot right under the hand
    assert peak(ev) == far  # a lone object 14 cm away is still the nearest object
    ev[near] = 4.0
    assert peak(ev) == near  # another one nearer takes its place
    # The old "distance" choice: the same evidence plus a learned penalty alpha x squared distance.
    old = _prior_policy("distance").encoder.prior
    d2 = ((cell_xy - hand[0, :2]) ** 2).sum(dim=-1)
    torch.testing.assert_close(old(ev[None], hand, temperature)[0, 0], ev - old.log_alpha.exp() * d2)


def test_the_evidence_is_the_grasp_point_map_before_the_prior_and_old_specs_keep_theirs():
    policy = _prior_policy()
    image, proprio = torch.rand(2, 3, 64, 64), torch.tensor([[0.5, 0.1, 0.2, 0.0, 0.08]] * 2)
    out = policy.heads(image, proprio)
    _, raw = policy.encoder.encode(image)  # no proprio: no prior
    torch.testing.assert_close(out["grasp_point_evidence"], raw[:, 0])
    t = policy.encoder.keypoints.log_temperature.exp()
    torch.testing.assert_close(out["keypoint_logits"][:, :1], policy.encoder.prior(raw[:, 0], proprio, t))
    # An encoder saved before grasp_choice existed picked by distance, and still does.
    saved = {k: v for k, v in _prior_policy("distance").spec.to_dict().items() if k != "grasp_choice"}
    assert EncoderSpec.from_dict(saved).grasp_choice == "distance"
    assert EncoderSpec().grasp_choice == "nearest_object"
    with pytest.raises(ValueError, match="grasp_choice"):
        EncoderSpec(grasp_choice="nearest")


def test_keypoint_supervision_moves_the_named_maps_to_the_labels():
    """A bright square at a random place: 150 steps of the keypoint loss alone make keypoint 0 find it."""
    rng = np.random.default_rng(0)
    n = 64
    images = np.zeros((n, 64, 64, 3), np.uint8)
    where = rng.integers(8, 56, (n, 2))
    for i, (x, y) in enumerate(where):
        images[i, y - 2:y + 2, x - 2:x + 2] = 255
    buf = Buffer()
    buf.add_episode(Episode(images=images, proprio=np.zeros((n, 5), np.float32)))
    buf.arrays["keypoints"][:, 0] = where.astype(np.float32)  # centre of the square, continuous px
    torch.manual_seed(0)
    policy = GraspPolicy()
    fit(policy, buf, FitConfig(steps=150, batch=32, lr=3e-3, encoder_lr=3e-3, jitter=0.0,
                              weights={"keypoints": 1.0}), seed=0)
    with torch.no_grad():
        feats = policy.encoder(torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255)
    # the named keypoint's coordinates are the last 2K features: x of keypoint 0 at -2K, y at -K
    k = policy.spec.keypoints
    px = (feats[:, -2 * k] + 1) / 2 * 15 * 4 + 0.5
    py = (feats[:, -k] + 1) / 2 * 15 * 4 + 0.5
    err = np.hypot(px.numpy() - where[:, 0], py.numpy() - where[:, 1])
    assert np.median(err) < 4.0, np.median(err)


def test_servo_law_on_the_true_grasp_reproduces_the_expert():
    """The servo policy's control law fed the privileged grasp must act like the expert itself
    while approaching and descending (where neither relies on finger contacts), whichever way
    round the yaw still to turn goes."""
    env = gym.make("PandaGraspState-v0", randomization="full", objects="heldout")
    expert = ScriptedExpert(env)
    compared = 0
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        for _ in range(30):
            label = expert.act()
            labels = expert.target_labels()  # None once its object left the scene
            proprio = obs["proprio"]
            if expert.phase in ("approach", "descend") and labels is not None:
                grasp = labels[1]
                t = torch.as_tensor
                action = servo_action(grasp_targets(t(grasp[None]), t(proprio[None])), t(proprio[None]))[0]
                np.testing.assert_allclose(action.numpy(), label, atol=1e-4)
                compared += 1
            obs, _, term, trunc, _ = env.step(label)
            if term or trunc:
                break
    env.close()
    assert compared >= 20


def test_servo_law_turns_the_way_that_stays_inside_the_wrist_range():
    """Hand at yaw 1.4 rad, grasp at -1.4 rad: the same grasp as 1.74 rad (a half turn), 0.34 rad
    away the short way round, but past the wrist's +pi/2 limit, where the hand would stop and hover.
    The law turns the long way (-2.8 rad), to where the expert turns, and its funnel keeps the hand
    up until it has."""
    proprio = torch.tensor([[0.55, 0.0, 0.10, 1.4, 0.08]])
    grasp = grasp_targets(torch.tensor([[0.55, 0.0, 0.03, -1.4]]), proprio)
    action = servo_action(grasp, proprio)
    assert action[0, 3] == -1  # full speed towards -1.4, not +0.34 towards the limit
    assert action[0, 2] > 0  # 2.8 rad still to turn: the funnel lifts the hand to its cap
    # Within the range nothing changes: 0.3 rad to turn the short way.
    near = grasp_targets(torch.tensor([[0.55, 0.0, 0.03, 1.1]]), proprio)
    assert -1 < servo_action(near, proprio)[0, 3] < 0


def test_servo_law_lifts_only_when_the_gripper_logit_says_holding():
    # Hand 1 cm above an estimated grasp point right below it, fingers part-way (2.5 cm): either an
    # object is held, or the fingers are still closing on / re-opening from nothing.
    proprio = torch.tensor([[0.55, 0.0, 0.04, 0.0, 0.025]])
    grasp = grasp_targets(torch.tensor([[0.55, 0.0, 0.03, 0.0]]), proprio)
    lifted = servo_action(grasp, proprio)  # the opening alone: holding
    assert lifted[0, 2] > 0.5 and lifted[0, 4] == -1
    held = servo_action(grasp, proprio, torch.tensor([-2.0]))  # the expert would keep it closed
    np.testing.assert_array_equal(held.numpy(), lifted.numpy())
    retry = servo_action(grasp, proprio, torch.tensor([2.0]))  # the expert would open: nothing held
    assert retry[0, 2] <= 0 and retry[0, 4] == 1
    # Outside the holding range the logit changes nothing (the law's own close/funnel decide).
    open_hand = proprio.clone()
    open_hand[0, 4] = 0.08
    np.testing.assert_array_equal(servo_action(grasp, open_hand, torch.tensor([2.0])).numpy(),
                                  servo_action(grasp, open_hand).numpy())


def test_policy_servo_forward_uses_the_action_heads_gripper_logit():
    torch.manual_seed(0)
    policy = GraspPolicy().eval()
    image = torch.rand(4, 3, 64, 64)
    proprio = torch.tensor([[0.55, 0.0, 0.04, 0.0, 0.025]] * 4)
    with torch.no_grad():
        fused = policy.fusion(image, proprio)
        expected = servo_action(policy.grasp_estimate(image, proprio), proprio, policy.action_head(fused)[:, 4],
                                policy.servo)
        np.testing.assert_array_equal(policy(image, proprio).numpy(), expected.numpy())
        # A head that says "keep closed" makes every part-way hand lift at full speed, closed.
        policy.action_head[-1].bias[4] = -100.0
        action = policy(image, proprio)
        assert bool((action[:, 2] == 1).all()) and bool((action[:, 4] == -1).all())


def test_grasp_geometry_back_projects_the_keypoint_peak_to_the_offset_from_the_hand():
    cam = Camera()
    geo = GraspGeometry(cam.to_dict(), 64)
    small = cam.with_image_size(64, 64)
    points = np.array([[0.50, -0.06, 0.03], [0.62, 0.08, 0.05]])
    u, v = small.project(points).T
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    # A sharp map on each point's cell, plus a weaker decoy elsewhere: a whole-map average would
    # land between the two; the window around the peak must ignore the decoy.
    logits = torch.stack([-((xs - (a - 0.5) / 4) ** 2 + (ys - (b - 0.5) / 4) ** 2) * 4
                          + 3.0 * torch.exp(-((xs - 2) ** 2 + (ys - 2) ** 2) / 0.5) for a, b in zip(u, v, strict=True)])
    proprio = torch.tensor([[0.55, 0.0, 0.20, 0.0, 0.08], [0.55, 0.0, 0.10, 0.0, 0.08]])
    off = geo(logits, torch.tensor(1.0), proprio, torch.tensor(points[:, 2], dtype=torch.float32))
    expected = (points[:, :2] - proprio[:, :2].numpy()) / GRASP_SCALE
    np.testing.assert_allclose(off.numpy(), expected, atol=0.005 / GRASP_SCALE)  # within 5 mm


def test_a_geometry_policy_adds_the_keypoint_offset_and_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    spec = EncoderSpec(camera=Camera().to_dict())
    policy = GraspPolicy(spec, geometry=True).eval()
    assert GraspPolicy(EncoderSpec(), geometry=True).geometry is None  # no camera, no geometry
    image, proprio = torch.rand(3, 3, 64, 64), torch.tensor([[0.55, 0.0, 0.15, 0.0, 0.08]] * 3)
    with torch.no_grad():
        feats, maps = policy.encoder.encode(image, proprio)
        head = policy.grasp_head(policy.fusion.combine(feats, proprio))
        est = policy.grasp_estimate(image, proprio)
        height = proprio[:, 2] + head[:, 2] * GRASP_SCALE
        temperature = policy.encoder.keypoints.log_temperature.exp()
        geo = policy.geometry(maps[:, 0], temperature, proprio, height.clamp(0.01, 0.15))
    np.testing.assert_allclose(est[:, :2].numpy(), (head[:, :2] + geo).numpy(), atol=1e-5)
    np.testing.assert_allclose(est[:, 2:].numpy(), head[:, 2:].numpy(), atol=1e-6)
    policy.save(tmp_path / "p.pt")
    again = GraspPolicy.load(tmp_path / "p.pt")
    assert again.geometry is not None
    np.testing.assert_array_equal(again(image, proprio).detach().numpy(), policy(image, proprio).detach().numpy())


def test_grasp_head_outputs_the_hypothesis_with_the_highest_logit():
    torch.manual_seed(0)
    head = GraspHead(8, 16, modes=3)
    x = torch.randn(32, 8)
    hyps, logits = head.hypotheses(x)
    assert hyps.shape == (32, 3, 5) and logits.shape == (32, 3)
    expected = hyps[torch.arange(32), logits.argmax(dim=1)]
    np.testing.assert_allclose(head(x).detach().numpy(), expected.detach().numpy(), atol=1e-6)
    # One mode is the plain MLP, under the same parameter names as before hypotheses existed.
    single = GraspHead(8, 16)
    assert single(x).shape == (32, 5) and "4.weight" in single.state_dict()
    with pytest.raises(ValueError, match="grasp_modes"):
        GraspHead(8, 16, modes=0)


def test_winner_takes_all_finds_both_modes_where_one_regressor_averages():
    # The same input, two equally likely grasps (+1 and -1 along x): one regressor learns their
    # mean (a point between two objects); two hypotheses trained winner-takes-all find both.
    torch.manual_seed(0)
    x = torch.ones(64, 4)
    target = torch.zeros(64, 5)
    target[:, 0] = torch.where(torch.arange(64) % 2 == 0, 1.0, -1.0)
    target[:, 3] = 1.0  # cos 2 dyaw: no turn
    found = {}
    for modes in (1, 2):
        head = GraspHead(4, 32, modes=modes)
        opt = torch.optim.Adam(head.parameters(), lr=3e-3)
        for _ in range(400):
            hyps, logits = head.hypotheses(x)
            loss = grasp_loss(hyps, logits, target).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        found[modes] = sorted(head.hypotheses(x[:1])[0][0, :, 0].tolist())
    assert abs(found[1][0]) < 0.2  # the average of +1 and -1
    assert found[2][0] < -0.8 and found[2][1] > 0.8
    # Whichever hypothesis is picked, it aims at one of the two grasps, not between them.
    picked = GraspHead.forward(head, x[:1])[0, 0].item()
    assert abs(abs(picked) - 1) < 0.2


def test_a_multi_hypothesis_policy_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    policy = GraspPolicy(grasp_modes=3)
    policy.save(tmp_path / "p.pt")
    loaded = GraspPolicy.load(tmp_path / "p.pt")
    assert loaded.grasp_head.modes == 3
    image = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    proprio = np.array([[0.55, 0.0, 0.1, 0.0, 0.08]] * 2, np.float32)
    np.testing.assert_array_equal(loaded.act(image, proprio), policy.act(image, proprio))


def test_policy_rejects_an_unknown_control():
    with pytest.raises(ValueError, match="control"):
        GraspPolicy(control="teleport")


def test_the_student_servo_law_descends_where_the_experts_hovers():
    """1 cm off, 9 mm above the grasp (just above closing height): the expert's funnel (6 mm
    tolerance) lifts the hand back up; the student's (12 mm, what new policies act with) keeps it
    going down, and both keep aiming at it."""
    proprio = torch.tensor([[0.55, 0.0, 0.049, 0.0, 0.08]])
    grasp = grasp_targets(torch.tensor([[0.56, 0.0, 0.04, 0.0]]), proprio)
    expert = servo_action(grasp, proprio)
    student = servo_action(grasp, proprio, servo=ServoLaw.student())
    assert expert[0, 2] > 0 and student[0, 2] < 0
    assert expert[0, 0] > 0 and student[0, 0] > expert[0, 0]  # the student's gain is higher
    np.testing.assert_array_equal(servo_action(grasp, proprio, servo=ServoLaw.expert()).numpy(), expert.numpy())
    assert GraspPolicy().servo == ServoLaw.student()


def test_servo_law_is_validated_and_travels_with_the_checkpoint(tmp_path):
    for bad in ({"xy_tol": -0.01}, {"gain": 0.0}, {"gain": 1.5}, {"hover": float("nan")}, {"drift": "far"}):
        with pytest.raises(ValueError, match="servo." + next(iter(bad))):
            ServoLaw(**bad)
    with pytest.raises(ValueError, match="unknown fields"):
        ServoLaw.from_dict({"xy_tolerance": 0.01})
    law = ServoLaw(xy_tol=0.02, gain=0.5)
    GraspPolicy(servo=law).save(tmp_path / "p.pt")
    assert GraspPolicy.load(tmp_path / "p.pt").servo == law
    # A checkpoint from before the law was stored ran the expert's law, and still does.
    blob = torch.load(tmp_path / "p.pt", weights_only=True)
    del blob["servo"]
    torch.save(blob, tmp_path / "old.pt")
    assert GraspPolicy.load(tmp_path / "old.pt").servo == ServoLaw.expert()


def test_the_student_aims_below_its_grasp_estimate_but_never_below_the_tray_floor():
    """The student's height estimate sits about a centimetre high near the object (README,
    "Closing too high"): its law aims ``aim`` below it, so 7 mm above the estimated grasp it keeps
    descending where the expert's closes, and it never aims below the tray floor + 1 cm."""
    from envs.scene import TRAY_FLOOR_Z

    student, expert = ServoLaw.student(), ServoLaw.expert()
    assert expert.aim == 0.0 and student.aim > 0.0
    proprio = torch.tensor([[0.55, 0.0, 0.057, 0.0, 0.08]])
    grasp = grasp_targets(torch.tensor([[0.55, 0.0, 0.05, 0.0]]), proprio)
    a_expert, a_student = servo_action(grasp, proprio, servo=expert), servo_action(grasp, proprio, servo=student)
    assert a_expert[0, 4] == -1.0 and a_student[0, 4] == 1.0  # the expert closes, the student goes on down
    dz = a_student[0, 2].item() * MAX_TRANSLATION / student.gain
    assert dz == pytest.approx(-0.007 - student.aim, abs=1e-6)
    # A grasp at the floor's limit: the aim is clamped to the floor + 1 cm.
    low = torch.tensor([[0.55, 0.0, TRAY_FLOOR_Z + 0.03, 0.0, 0.08]])
    g = grasp_targets(torch.tensor([[0.55, 0.0, TRAY_FLOOR_Z + 0.01, 0.0]]), low)
    dz = servo_action(g, low, servo=student)[0, 2].item() * MAX_TRANSLATION / student.gain
    assert dz == pytest.approx(-0.02, abs=1e-6)
    # Checkpoints from before ``aim`` existed load with the expert's 0.
    assert ServoLaw.from_dict({"xy_tol": 0.012, "gain": 0.85}).aim == 0.0
