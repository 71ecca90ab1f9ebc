"""``sim2real.ros.safety``: clamps, watchdog, emergency stop, episode time and image checks."""

import numpy as np
import pytest

from sim2real.ros.safety import SafetyConfig, SafetyGate, check_image

SPEC = {"action_scale": {"max_translation_m": 0.04, "max_rotation_rad": 0.25}, "control_hz": 10.0}
CENTRE = np.array([0.55, 0.0, 0.2])


def gate(**kw) -> SafetyGate:
    g = SafetyGate.from_spec(SafetyConfig(**kw), SPEC)
    g.image_received(0.0)
    return g


def test_actions_become_twists_in_speed_units():
    cmd = gate(max_linear_speed=2.0).command(np.array([0.5, -0.25, 0.0, 0.4, 1.0]), CENTRE, 0.05)
    np.testing.assert_allclose(cmd.linear, [0.2, -0.1, 0.0])  # 0.5 x 0.04 m/step x 10 Hz
    np.testing.assert_allclose(cmd.angular, [0.0, 0.0, 1.0])  # 0.4 x 0.25 rad x 10 Hz
    assert cmd.gripper == 1.0 and cmd.reasons == []


def test_speed_is_clamped_keeping_the_direction():
    cmd = gate(max_linear_speed=0.1, max_angular_speed=0.5).command(np.array([1, 1, 0, -1, -1.0]), CENTRE, 0.05)
    assert np.linalg.norm(cmd.linear) == pytest.approx(0.1)
    assert cmd.linear[0] == pytest.approx(cmd.linear[1])
    assert cmd.angular[2] == -0.5 and cmd.gripper == -1.0
    assert any("clamped" in r for r in cmd.reasons)


def test_workspace_boundary_stops_only_the_outward_components():
    g = gate(workspace_low=(0.3, -0.3, 0.01), workspace_high=(0.8, 0.3, 0.4))
    at_floor = np.array([0.55, 0.0, 0.01])
    cmd = g.command(np.array([0.5, 0.0, -1.0, 0, 1.0]), at_floor, 0.05)
    assert cmd.linear[2] == 0.0 and cmd.linear[0] > 0 and "workspace" in " ".join(cmd.reasons)
    cmd = g.command(np.array([0.0, 0.0, 1.0, 0, 1.0]), at_floor, 0.05)  # moving back inside is allowed
    assert cmd.linear[2] > 0


def test_watchdog_zeroes_the_command_when_images_stop():
    g = gate(stale_after_s=0.2)
    act = np.array([1.0, 0, 0, 0, 1.0])
    assert not g.command(act, CENTRE, 0.19).is_zero
    stale = g.command(act, CENTRE, 0.21)
    assert stale.is_zero and stale.gripper is None and "stale image" in stale.reasons[0]
    g.image_received(0.3)
    assert not g.command(act, CENTRE, 0.35).is_zero
    fresh = SafetyGate.from_spec(SafetyConfig(), SPEC)
    assert fresh.command(act, CENTRE, 0.0).reasons == ["no image yet"]


def test_emergency_stop_latches_until_reset():
    g = gate()
    act = np.array([1.0, 0, 0, 0, 1.0])
    g.estop()
    g.estop(False)  # a released button does not release the stop
    assert g.command(act, CENTRE, 0.01).is_zero and "emergency stop" in g.command(act, CENTRE, 0.01).reasons
    g.reset_estop()
    assert not g.command(act, CENTRE, 0.01).is_zero


def test_the_workspace_clamp_looks_ahead_so_the_hand_never_passes_the_wall():
    g = gate(max_linear_speed=0.25, workspace_low=(0.3, -0.3, 0.005), workspace_high=(0.8, 0.3, 0.4))
    near_floor = np.array([0.55, 0.0, 0.006])
    cmd = g.command(np.array([0, 0, -1.0, 0, 1.0]), near_floor, 0.05)  # one period = 0.1 s
    assert near_floor[2] + cmd.linear[2] * 0.1 == pytest.approx(0.005) and "workspace" in cmd.reasons[-1]
    # an older position (here 0.4 s of uncertainty) leaves less room per second
    slow = g.command(np.array([0, 0, -1.0, 0, 1.0]), np.array([0.55, 0.0, 0.105]), 0.05, horizon_s=0.4)
    assert 0.105 + slow.linear[2] * 0.4 == pytest.approx(0.005)
    far = g.command(np.array([0, 0, -1.0, 0, 1.0]), np.array([0.55, 0.0, 0.2]), 0.05)
    assert far.linear[2] == pytest.approx(-0.25) and not far.reasons[1:]


def test_episode_time_limit():
    g = gate(max_episode_s=5.0, stale_after_s=2.0)
    act = np.array([1.0, 0, 0, 0, 1.0])
    g.image_received(4.8)
    assert not g.command(act, CENTRE, 4.9).is_zero
    assert "episode time" in g.command(act, CENTRE, 5.1).reasons[0]
    g.new_episode()
    g.image_received(6.0)
    assert not g.command(act, CENTRE, 6.1).is_zero


@pytest.mark.parametrize("action", [np.array([np.nan, 0, 0, 0, 1.0]), np.zeros(4)])
def test_bad_actions_never_move_the_arm(action):
    assert gate().command(action, CENTRE, 0.01).is_zero


@pytest.mark.parametrize("image, message", [
    (np.zeros((48, 64, 3), np.uint8), "size 64x48"),
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (np.zeros((64, 64), np.uint8), "shape"),
    ([[0]], "not an array"),
])
def test_malformed_images_are_rejected(image, message):
    assert message in check_image(image, 64, 64)


def test_a_good_image_passes():
    assert check_image(np.zeros((480, 640, 3), np.uint8), 640, 480) is None


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="max_linear_speed"):
        SafetyConfig(max_linear_speed=0)
    with pytest.raises(ValueError, match="workspace"):
        SafetyConfig(workspace_low=(1, 0, 0), workspace_high=(0, 1, 1))
