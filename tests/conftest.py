"""Shared fixtures for the transfer tests: a fake sim run directory (untrained policy, optional
simulated DAgger data) and a tiny native "real" dataset. Session-scoped and read-only: a test that
needs to damage a dataset copies it first."""

import json
from pathlib import Path

import numpy as np
import pytest

IMAGE_SIZE = 64


def smooth_images(rng: np.random.Generator, n: int, size: int, tint: tuple[float, float, float],
                  brightness: float) -> np.ndarray:
    """Random-ish but image-like uint8 frames: a low-frequency pattern, a bright blob, mild noise."""
    import cv2

    out = []
    for _ in range(n):
        coarse = rng.uniform(0, 1, (6, 6, 3)).astype(np.float32)
        img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        cx, cy = rng.uniform(0.2 * size, 0.8 * size, 2)
        y, x = np.mgrid[0:size, 0:size]
        img += 0.8 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (0.08 * size) ** 2))[..., None]
        img = img * np.asarray(tint, np.float32) * brightness + rng.normal(0, 0.03, img.shape)
        out.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return np.stack(out)


def write_native(root: Path, episodes: int = 6, steps: int = 6, labelled: tuple[int, ...] = (0, 1, 2, 3),
                 failed: tuple[int, ...] = (4,), teleop: tuple[int, ...] = (0, 1), grasp_rows: int = 4,
                 seed: int = 0, real: bool = True) -> Path:
    """A native dataset of ``episodes`` x ``steps`` rows.

    Episodes in ``labelled`` succeed and carry the executed grasp pose on their first ``grasp_rows``
    rows; episodes in ``failed`` carry a grasp pose but failed (success 0: the label must be dropped);
    the others have proprio only and an unknown outcome (images for the unsupervised parts).
    ``teleop`` episodes also carry action labels. ``real=False`` writes sim-like rows (object labels,
    expert actions everywhere, cooler and darker images) as a sim run's ``data/dagger_1`` would.
    """
    from envs.camera import Camera
    from sim2real.data.episodes import Episode, EpisodeWriter

    rng = np.random.default_rng(seed)
    writer = EpisodeWriter(root, meta={"source": "test fixture", "camera": Camera().to_dict()})
    tint, brightness = ((1.0, 0.85, 0.6), 1.0) if real else ((0.6, 0.8, 1.0), 0.6)
    for e in range(episodes):
        start = np.array([0.55 + rng.uniform(-0.08, 0.08), rng.uniform(-0.1, 0.1), 0.25, rng.uniform(-1, 1), 0.08])
        target = np.array([0.55 + rng.uniform(-0.1, 0.1), rng.uniform(-0.12, 0.12), 0.03, rng.uniform(-1.5, 1.5)])
        frac = np.linspace(0, 1, steps)[:, None]
        proprio = (start[None] * (1 - frac) + np.r_[target, 0.08][None] * frac).astype(np.float32)
        proprio[:, 4] = 0.08
        action = rng.uniform(-1, 1, (steps, 5)).astype(np.float32)
        grasp = np.full((steps, 4), np.nan, np.float32)
        success = None
        if e in labelled or e in failed or not real:
            grasp[:grasp_rows] = target
            success = e not in failed
        expert = action if (e in teleop or not real) else None
        obj = None if real else np.tile(np.r_[target[:3] - [0, 0, 0.01], target[3]], (steps, 1)).astype(np.float32)
        writer.append(Episode(images=smooth_images(rng, steps, IMAGE_SIZE, tint, brightness), proprio=proprio,
                              action=action, expert_action=expert, object=obj, grasp=grasp, success=success,
                              source="test-real" if real else "sim", seed=seed * 100 + e))
    return root


def write_fake_run(root: Path, sim_data: bool = True, seed: int = 1234, grasp_modes: int = 1,
                   geometry: bool = False) -> Path:
    """A finished-looking sim run: config.json, an untrained (seeded) policy.pt, optionally data/dagger_1.
    The seed is not 0, the seed adaptation initializes ``scratch`` with: the two must differ."""
    import torch

    from envs.camera import Camera
    from policies.encoders import EncoderSpec
    from policies.policy import GraspPolicy

    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    policy = GraspPolicy(EncoderSpec(camera=Camera().to_dict()), grasp_modes=grasp_modes, geometry=geometry)
    policy.save(root / "policy.pt")
    config = {"train": {"preset": "test", "image_size": IMAGE_SIZE, "camera": None, "chunk_size": 25,
                        "eval_randomization": "full", "seed": seed}}
    (root / "config.json").write_text(json.dumps(config, indent=2))
    if sim_data:
        write_native(root / "data" / "dagger_1", episodes=4, steps=6, seed=seed + 1, real=False)
    return root


@pytest.fixture(scope="session")
def fake_run(tmp_path_factory) -> Path:
    """A run directory with simulated data (DANN / CORAL source, forgetting)."""
    return write_fake_run(tmp_path_factory.mktemp("runs") / "sim-run")


@pytest.fixture(scope="session")
def fake_run_without_data(tmp_path_factory) -> Path:
    return write_fake_run(tmp_path_factory.mktemp("runs") / "sim-run-nodata", sim_data=False)


@pytest.fixture(scope="session")
def real_dataset(tmp_path_factory) -> Path:
    """6 episodes x 6 steps: 4 labelled successes (rows 0-3 labelled, 0-1 teleoperated), 1 failed
    grasp (labels must be dropped), 1 unlabelled episode."""
    return write_native(tmp_path_factory.mktemp("real") / "real_grasps")


@pytest.fixture(scope="session")
def exported(fake_run, tmp_path_factory):
    """(folder, spec) of ``fake_run`` exported: policy.onnx + policy.json (64x64 input, 10 Hz)."""
    from sim2real.export import export_policy

    out = tmp_path_factory.mktemp("export")
    spec = export_policy(fake_run, out, log=lambda _msg: None)
    return out, spec


@pytest.fixture
def write_dataset():
    """``write_native`` as a fixture, for tests that need a dataset of their own shape."""
    return write_native
