"""The privileged scripted expert: planning leaves no trace, rehearsals predict outcomes, it grasps."""

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.expert import ScriptedExpert, run_episode
from envs.robot import MAX_OPENING


@pytest.fixture(scope="module")
def env():
    env = gym.make("PandaGraspState-v0", randomization="full", objects="heldout")
    yield env
    env.close()


def _world(env):
    u = env.unwrapped
    poses = [np.concatenate(u.sim.pose(n)) for n in u.scene.active]
    joints = u.sim.joint_positions("robot", range(11))
    return np.concatenate(poses + [joints]), u._rng_control.bit_generator.state, list(u._actions)


def test_planning_restores_the_world(env):
    env.reset(seed=3)
    before, rng_before, actions_before = _world(env)
    expert = ScriptedExpert(env)
    grasp = expert.plan()
    after, rng_after, actions_after = _world(env)
    assert grasp is not None and expert.rehearsals >= 1
    np.testing.assert_array_equal(before, after)
    assert rng_before == rng_after
    assert all(np.array_equal(a, b) for a, b in zip(actions_before, actions_after, strict=True))


def test_rehearsal_predicts_the_executed_outcome(env):
    agree = 0
    for seed in range(4):
        expert = ScriptedExpert(env)
        env.reset(seed=100 + seed)
        expert.reset()
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(expert.act())
            done = terminated or truncated
        agree += int(expert.planned_success == info["is_success"])
    assert agree >= 3


def test_expert_grasps_heldout_objects_under_full_randomization(env):
    expert = ScriptedExpert(env)
    # 12 seeds, at least 9 grasps: a 94 % expert fails this with probability ~0.3 %; a broken
    # expert (even 60 %) fails it most of the time.
    results = [run_episode(env, expert, seed=200 + s) for s in range(12)]
    assert sum(ok for ok, _ in results) >= 9
    assert all(steps <= env.unwrapped.config.max_episode_steps for _, steps in results)


def test_naive_expert_acts_without_planning(env):
    expert = ScriptedExpert(env, plan=False)
    env.reset(seed=5)
    action = expert.act()
    assert action.shape == (5,) and np.all(np.abs(action) <= 1) and expert.rehearsals == 0


def test_labels_depend_on_the_state_not_on_who_drove(env):
    """DAgger relabelling: a fresh expert and one that drove here give the same label."""
    env.reset(seed=11)
    driver = ScriptedExpert(env)
    for _ in range(8):
        env.step(driver.act())
    fresh = ScriptedExpert(env)
    fresh.grasp = driver.grasp  # same plan, no shared history
    np.testing.assert_allclose(fresh.act(), driver.act(), atol=1e-6)


def test_a_gripper_closed_on_nothing_is_told_to_open(env):
    env.reset(seed=12)
    expert = ScriptedExpert(env)
    expert.act()  # plan
    point, yaw = expert._target()
    u = env.unwrapped
    # A student that closed the gripper high above the object: the expert must say "open, approach".
    for _ in range(6):
        ee, _ = u.robot.ee_pose()
        u.robot.hold(np.array([point[0] + 0.08, point[1], 0.2]), yaw, 0.0)
        u.sim.step(u.config.substeps)
    label = expert.act()
    assert label[4] == 1.0 and expert.phase == "approach"


def test_height_label_changes_smoothly_with_the_offset(env):
    """The descent funnel: hovering 4 cm above the grasp height, the z label rises steadily with the
    horizontal offset (no jump from "down" to "up" that a regressing student would average away)."""
    env.reset(seed=13)
    expert = ScriptedExpert(env)
    expert.act()  # plan
    point, yaw = expert._target()
    u = env.unwrapped
    labels = []
    for off in np.linspace(0.0, 0.06, 13):
        for _ in range(6):
            u.robot.hold(np.array([point[0] + off, point[1], point[2] + 0.04]), yaw, MAX_OPENING)
            u.sim.step(u.config.substeps)
        labels.append(expert._control())
    z = np.array([a[2] for a in labels])
    assert z[0] < -0.3 and z[-1] > 0.3  # down when on target, up when far off at this height
    assert np.all(np.diff(z) > -0.1) and np.max(np.diff(z)) < 0.6, z
