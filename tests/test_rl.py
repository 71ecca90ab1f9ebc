"""SB3 on top of the encoder: warm start from BC copies the policy exactly (SAC) or up to the
squashing (PPO), the result copies back, the RL stage runs, and a state teacher labels a pixel env."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from policies.policy import GraspPolicy
from policies.rl import StateTeacher, load_bc_into_sb3, make_model, sb3_into_policy, train_state_teacher


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
