"""GraspPolicy and its training: BC overfits a tiny dataset; save -> load gives identical actions."""

import numpy as np
import torch

from policies.imitation import Buffer, FitConfig, fit
from policies.policy import GraspPolicy
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
    policy = GraspPolicy()
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


def test_losses_skip_rows_without_labels():
    buf, _ = tiny_buffer(n=8)
    buf.arrays["expert_action"][:] = np.nan  # e.g. unlabelled real images
    policy = GraspPolicy()
    hist = fit(policy, buf, FitConfig(steps=2, batch=8, weights={"action": 1.0, "object": 1.0}), seed=0)
    assert np.isfinite(hist[-1]["total"]) and hist[-1]["action"] == 0.0
