"""Encoders: shapes, save/load, and the SB3 features-extractor contract on a short rollout."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from envs.camera import Camera
from policies.encoders import (
    ENCODERS,
    GRASP_CHOICES,
    NEAREST_MARGIN,
    PRIOR_PLANE_Z,
    STRIDE,
    Encoder,
    EncoderSpec,
    GraspExtractor,
    load_encoder,
    save_encoder,
)


@pytest.mark.parametrize("arch", ENCODERS)
def test_encoder_shapes_and_blocks(arch):
    enc = Encoder(EncoderSpec(arch=arch, features_dim=32))
    out = enc(torch.rand(3, 3, 64, 64))
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    assert len(enc.blocks) == 4


def test_spec_validation_names_the_field():
    with pytest.raises(ValueError, match="arch.*'vit'"):
        EncoderSpec(arch="vit")
    with pytest.raises(ValueError, match="image_size"):
        EncoderSpec(image_size=60)


@pytest.mark.parametrize("choice", GRASP_CHOICES)
def test_grasp_point_prior_peaks_under_the_gripper_and_only_moves_the_grasp_map(choice):
    cam = Camera()
    enc = Encoder(EncoderSpec(camera=cam.to_dict(), grasp_choice=choice)).eval()
    torch.nn.init.zeros_(enc.keypoint_maps.weight)
    torch.nn.init.zeros_(enc.keypoint_maps.bias)  # detector silent: only the prior shapes the map
    image = torch.rand(2, 3, 64, 64)
    grippers = np.array([[0.50, 0.06, 0.20, 0.0, 0.04], [0.62, -0.05, 0.12, 0.3, 0.08]], np.float32)
    with torch.no_grad():
        _, logits = enc.encode(image, torch.as_tensor(grippers))
        _, plain = enc.encode(image)
    n = 64 // STRIDE
    for k, g in enumerate(grippers):
        peak = int(logits[k, 0].flatten().argmax())
        if choice == "nearest_object":
            # Evidence the same everywhere: every cell is as likely an object, so the peak is among
            # the cells within the margin of the one nearest the gripper (nothing can hide those).
            d = np.linalg.norm(enc.prior.cell_xy.numpy() - g[:2], axis=1)
            assert d[peak] <= d.min() + NEAREST_MARGIN + 1e-6
            continue
        row, col = divmod(peak, n)
        u, v = cam.with_image_size(64, 64).project(np.array([[g[0], g[1], PRIOR_PLANE_Z]]))[0]
        # The peak is the cell whose tray point is nearest the gripper: its centre is within a cell
        # of where the camera sees the gripper's tray point (perspective skews cells on the plane).
        assert abs((col + 0.5) * STRIDE - u) <= STRIDE and abs((row + 0.5) * STRIDE - v) <= STRIDE
    assert torch.equal(logits[:, 1:], plain[:, 1:])  # the other maps ignore proprio
    assert not torch.equal(logits[:, :1], plain[:, :1])
    # Without a camera in the spec there is no prior: proprio changes nothing.
    bare = Encoder(EncoderSpec()).eval()
    with torch.no_grad():
        assert torch.equal(bare(image, torch.as_tensor(grippers)), bare(image))


def test_nearest_object_shadow_matches_the_pairwise_definition():
    """The prefix-sum shadow (training) equals the pairwise sum it replaced (kept for ONNX export),
    values and gradients, including ties and cells exactly a margin apart."""
    from policies.encoders import GraspPointPrior

    gen = torch.Generator().manual_seed(0)
    d = torch.rand(5, 256, generator=gen, dtype=torch.float64) * 0.3
    d[0, :10] = 0.0  # ties, and the nearest cells
    d[1, 1] = d[1, 0] + NEAREST_MARGIN  # exactly a margin apart: not nearer
    log_miss = (-torch.rand(5, 256, generator=gen, dtype=torch.float64) * 5).requires_grad_()
    got = GraspPointPrior.shadow(d, log_miss)
    nearer = (d[:, None, :] < d[:, :, None] - NEAREST_MARGIN).to(log_miss.dtype)
    want = (nearer * log_miss[:, None, :]).sum(dim=-1)
    assert torch.allclose(got, want, atol=1e-10)
    w = torch.rand(5, 256, generator=gen, dtype=torch.float64)
    (g_got,) = torch.autograd.grad((got * w).sum(), log_miss)
    (g_want,) = torch.autograd.grad((want * w).sum(), log_miss)
    assert torch.allclose(g_got, g_want, atol=1e-10)
    assert got[0, :10].eq(0).all()  # the ten nearest cells (tied) hide nothing from each other


def test_spec_rejects_a_camera_it_cannot_read():
    with pytest.raises(ValueError, match="encoder camera"):
        EncoderSpec(camera={"position": [0, 0, 1]})


def test_save_load_round_trip_gives_identical_features(tmp_path):
    enc = Encoder(EncoderSpec(features_dim=16)).eval()
    save_encoder(tmp_path / "enc.pt", enc)
    loaded = load_encoder(tmp_path / "enc.pt").eval()
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(enc(x), loaded(x))
    assert loaded.spec == enc.spec


def test_load_rejects_other_files(tmp_path):
    torch.save({"kind": "something else"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a sim2real encoder"):
        load_encoder(tmp_path / "x.pt")


@pytest.mark.parametrize("freeze", [False, True])
def test_sb3_ppo_trains_with_the_extractor(tmp_path, freeze):
    from stable_baselines3 import PPO

    enc = Encoder(EncoderSpec(features_dim=32))
    save_encoder(tmp_path / "enc.pt", enc)
    env = gym.make("PandaGrasp-v0", image_size=64, randomization="light", max_episode_steps=8)
    model = PPO("MultiInputPolicy", env, n_steps=16, batch_size=8, n_epochs=1, device="cpu", seed=0,
                policy_kwargs={"features_extractor_class": GraspExtractor,
                               "features_extractor_kwargs": {"encoder": str(tmp_path / "enc.pt"), "freeze": freeze}})
    extractor = model.policy.features_extractor
    before = {k: v.clone() for k, v in extractor.fusion.encoder.state_dict().items()}
    model.learn(total_timesteps=32)
    after = extractor.fusion.encoder.state_dict()
    same = all(torch.equal(before[k], after[k]) for k in before)
    assert same == freeze  # frozen: weights *and* BatchNorm statistics unchanged; else they moved
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (5,) and np.all(np.abs(action) <= 1)
    env.close()
