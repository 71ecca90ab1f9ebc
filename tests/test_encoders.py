"""Encoders: shapes, save/load, and the SB3 features-extractor contract on a short rollout."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from policies.encoders import ENCODERS, Encoder, EncoderSpec, GraspExtractor, load_encoder, save_encoder


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
