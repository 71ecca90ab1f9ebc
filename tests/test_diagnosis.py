"""policies.diagnosis: the estimate-error table, the recorded states and the oracle attribution."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from envs.camera import Camera
from envs.expert import ScriptedExpert
from policies.diagnosis import (
    COLUMNS,
    ORACLE_ROWS,
    error_table,
    estimate_rows,
    oracle_action,
    oracle_successes,
    parse_oracle_row,
    plot_oracle,
    plot_rows,
)
from policies.encoders import EncoderSpec, images_to_tensor
from policies.policy import GRASP_SCALE, GraspPolicy, grasp_targets, servo_action


def rows_with(estimate_scale: float, n: int = 200, seed: int = 0) -> np.ndarray:
    """Synthetic rows: offsets up to 12 cm, half low, the estimate = scale x the true offset."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(-0.12, 0.12, (n, 2))
    height = np.where(np.arange(n) % 2 == 0, 0.01, 0.10)
    return np.column_stack([np.arange(n) // 10, height, true, estimate_scale * true, np.ones(n)])


def test_a_perfect_estimate_has_gain_one_and_no_error():
    table = error_table(rows_with(1.0))
    assert table and all(r["gain"] == pytest.approx(1.0) and r["error_cm"] == pytest.approx(0.0) for r in table)
    assert sum(r["states"] for r in table) == 200
    assert {r["height"] for r in table} == {"low", "high"}


def test_an_estimate_that_says_right_here_has_gain_zero_and_the_whole_offset_as_error():
    for r in error_table(rows_with(0.0)):
        assert r["gain"] == pytest.approx(0.0) and r["estimate_cm"] == pytest.approx(0.0)
        assert r["error_cm"] == pytest.approx(r["true_cm"])


def test_a_halved_estimate_has_gain_one_half_and_bins_hold_their_offsets():
    for r in error_table(rows_with(0.5)):
        lo, hi = r["offset_cm"]
        assert r["gain"] == pytest.approx(0.5) and lo <= r["true_cm"] < (hi if hi is not None else np.inf)


@pytest.fixture(scope="module")
def setup():
    env = gym.make("PandaGrasp-v0", disable_env_checker=True, image_size=64, randomization="light", objects="heldout")
    torch.manual_seed(0)
    policy = GraspPolicy(EncoderSpec(camera=Camera().to_dict()))  # left in training mode on purpose
    yield env, ScriptedExpert(env, plan=False), policy
    env.close()


def test_expert_driven_rows_hold_the_experts_offset_and_the_policys_estimate(setup, tmp_path):
    env, expert, policy = setup
    rows = estimate_rows(env, expert, policy, [3], drive="expert")
    assert policy.training  # the mode it came in with is restored
    assert rows.shape[1] == len(COLUMNS) and len(rows) > 5 and np.isfinite(rows).all()
    assert (rows[:, 0] == 0).all() and set(rows[:, 6]) <= {0.0, 1.0}
    # Replay the first state: its true offset is the expert's grasp minus the hand, and its
    # estimate is what the policy says about that image.
    obs, _ = env.reset(seed=3)
    expert.reset()
    expert.act()
    grasp = expert.target_labels()[1]
    assert rows[0, 2:4] == pytest.approx(grasp[:2] - obs["proprio"][:2], abs=1e-5)
    assert rows[0, 1] == pytest.approx(obs["proprio"][2] - grasp[2], abs=1e-5)
    policy.eval()  # rows are recorded on running BatchNorm statistics
    est = policy.grasp_estimate(images_to_tensor(obs["image"][None]), torch.as_tensor(obs["proprio"][None]))
    policy.train()
    assert rows[0, 4:6] == pytest.approx(est[0, :2].numpy() * GRASP_SCALE, abs=1e-5)
    # The expert usually grasps: its offsets shrink to under 2 cm before the lift.
    assert np.linalg.norm(rows[:, 2:4], axis=1).min() < 0.02
    plot_rows(rows, tmp_path / "e.png", title="test")
    assert (tmp_path / "e.png").stat().st_size > 1000


def test_student_driven_rows_and_a_bad_driver(setup):
    env, expert, policy = setup
    seen = []
    rows = estimate_rows(env, expert, policy, [5, 6], drive="student", on_episode=lambda k, s: seen.append(k))
    assert seen == [0, 1] and set(rows[:, 0]) == {0.0, 1.0}
    with pytest.raises(ValueError, match="drive"):
        estimate_rows(env, expert, policy, [5], drive="teacher")


def test_oracle_rows_parse_and_a_bad_part_is_named():
    assert parse_oracle_row("") == frozenset()
    assert parse_oracle_row("xy+holding") == {"xy", "holding"}
    assert parse_oracle_row("expert") == {"expert"}
    assert all(isinstance(parse_oracle_row(r), frozenset) for r in ORACLE_ROWS)
    with pytest.raises(ValueError, match="'depth'"):
        parse_oracle_row("xy+depth")


def test_oracle_action_is_the_policys_without_parts_and_the_law_on_the_truth_with_all(setup):
    env, expert, policy = setup
    policy.eval()
    try:
        obs, _ = env.reset(seed=4)
        expert.reset()
        expert.act()
        image, proprio = obs["image"], obs["proprio"]
        np.testing.assert_allclose(oracle_action(policy, expert, image, proprio, frozenset()),
                                   policy.act(image, proprio), atol=1e-6)
        # Every part true: the servo law on the expert's grasp, lifting only if the expert does.
        p = torch.as_tensor(proprio[None])
        truth = grasp_targets(torch.as_tensor(expert.target_labels()[1][None]), p)
        holding = torch.tensor([-10.0 if expert.phase == "lift" else 10.0])
        want = servo_action(truth, p, holding, policy.servo)[0].numpy()
        got = oracle_action(policy, expert, image, proprio, frozenset({"xy", "yaw", "height", "holding"}))
        np.testing.assert_allclose(got, want, atol=1e-6)
        # Only xy true: the policy's own height and yaw remain, so the action differs somewhere.
        only_xy = oracle_action(policy, expert, image, proprio, frozenset({"xy"}))
        assert not np.allclose(only_xy, want, atol=1e-4)
    finally:
        policy.train()


def test_oracle_successes_pair_the_expert_row_with_the_experts_own_episode(setup, tmp_path):
    env, expert, policy = setup
    seen = []
    wins = oracle_successes(env, expert, policy, [3, 4], "expert", on_episode=lambda k, s: seen.append(s))
    assert wins == seen and len(wins) == 2
    # The same seed replays the same world: the expert row is the scripted expert's own result.
    from envs.expert import run_episode

    assert run_episode(env, ScriptedExpert(env, plan=False), seed=3)[0] == wins[0]
    assert policy.training  # the mode it came in with is restored
    student = oracle_successes(env, expert, policy, [3], "")
    assert student in ([True], [False])
    result = {"rows": [{"row": r, "label": r or "student", "success_rate": 0.5, "ci95": [0.2, 0.8],
                        "episodes": 2} for r in ("", "xy", "expert")]}
    plot_oracle(result, tmp_path / "o.png", title="test")
    assert (tmp_path / "o.png").stat().st_size > 1000
