"""SB3 on top of the encoder: warm start from BC copies the policy exactly (SAC) or up to the
squashing (PPO), the result copies back, the RL stage runs, and a state teacher labels a pixel env."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from policies.encoders import Encoder
from policies.policy import GraspPolicy
from policies.rl import (
    StateTeacher,
    load_bc_into_sb3,
    make_model,
    make_servo_ppo,
    sb3_into_policy,
    train_state_teacher,
)


@pytest.fixture(scope="module")
def env():
    env = gym.make("PandaGrasp-v0", image_size=64, randomization="light", max_episode_steps=6)
    yield env
    env.close()


def test_sac_warm_start_reproduces_the_bc_policy(env):
    torch.manual_seed(0)
    policy = GraspPolicy(control="direct").eval()
    model = make_model("sac", env, encoder=policy.encoder, seed=0, buffer_size=100)
    load_bc_into_sb3(policy, model)
    model.policy.set_training_mode(False)
    obs, _ = env.reset(seed=1)
    sb3_action, _ = model.predict(obs, deterministic=True)
    ours = policy.act(obs["image"], obs["proprio"])
    np.testing.assert_allclose(sb3_action[:4], ours[:4], atol=1e-5)
    assert np.sign(sb3_action[4]) == ours[4]


def test_ppo_round_trip_copies_weights_back(env):
    policy = GraspPolicy(control="direct").eval()
    model = make_model("ppo", env, encoder=policy.encoder, seed=0, n_steps=8, batch_size=8)
    load_bc_into_sb3(policy, model)
    model.learn(total_timesteps=8)  # changes the SB3 weights
    other = GraspPolicy(control="direct").eval()
    sb3_into_policy(model, other)
    obs, _ = env.reset(seed=2)
    model.policy.set_training_mode(False)
    mean = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).distribution.mean[0].detach()
    expected = np.clip(mean.numpy()[:4], -1, 1)
    got = other.act(obs["image"], obs["proprio"])[:4]
    np.testing.assert_allclose(np.arctanh(np.clip(got, -0.999999, 0.999999)), mean.numpy()[:4], rtol=1e-4, atol=1e-4)
    assert np.all(np.sign(got) == np.sign(expected))


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_a_pretrained_encoder_survives_sb3_initialisation(env, algo):
    # SB3's ActorCriticPolicy re-initialises its features extractor orthogonally after building it.
    torch.manual_seed(3)
    encoder = Encoder()
    expected = {k: v.clone() for k, v in encoder.state_dict().items()}
    extra = {"buffer_size": 100} if algo == "sac" else {}
    model = make_model(algo, env, encoder=encoder, freeze=True, seed=0, **extra)
    got = model.policy.features_extractor.fusion.encoder.state_dict() if algo == "ppo" else \
        model.policy.actor.features_extractor.fusion.encoder.state_dict()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_servo_ppo_starts_as_the_policy_it_was_given_and_trains_its_grasp_head(env):
    torch.manual_seed(4)
    policy = GraspPolicy(control="servo").eval()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    model = make_servo_ppo(env, policy, freeze=True, seed=0, n_steps=16, batch_size=16)
    obs, _ = env.reset(seed=5)
    sb3_action, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(sb3_action, policy.act(obs["image"], obs["proprio"]), atol=1e-5)
    head = [p.clone() for p in model.policy.action_net.parameters()]
    encoder = {k: v.clone() for k, v in model.policy.features_extractor.fusion.encoder.state_dict().items()}
    model.learn(total_timesteps=16)
    assert any(not torch.equal(a, b) for a, b in zip(head, model.policy.action_net.parameters(), strict=True))
    after = model.policy.features_extractor.fusion.encoder.state_dict()
    assert all(torch.equal(after[k], v) for k, v in encoder.items())  # frozen: weights and BN statistics
    assert all(torch.equal(policy.state_dict()[k], v) for k, v in before.items())  # the given policy is untouched


def test_state_teacher_labels_a_pixel_env(env):
    model = train_state_teacher(steps=64, algo="ppo", randomization="light")
    teacher = StateTeacher(env, model)
    env.reset(seed=3)
    action = teacher.act()
    assert action.shape == (5,) and np.all(np.abs(action) <= 1 + 1e-6)
    state = env.unwrapped.state_observation()
    assert model.observation_space.contains(state)


def test_unknown_algo():
    with pytest.raises(ValueError, match="algo"):
        make_model("dqn", None)
