"""``sim2real.ros.core`` (the control loop every transport shares) and ``sim2real.ros.messages``,
without ROS: time is passed in, the policy is a recording fake."""

import base64

import cv2
import numpy as np
import pytest

from sim2real.ros.core import DeployConfig, PolicyLoop
from sim2real.ros.messages import (
    BadMessage,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_image,
    quaternion_from_yaw,
    yaw_of,
)
from sim2real.ros.sim_robot import RobotModel

SPEC = {"action_scale": {"max_translation_m": 0.04, "max_rotation_rad": 0.25}, "control_hz": 10.0,
        "gripper": {"max_opening_m": 0.08},
        "camera": {"intrinsics": {"width": 640, "height": 480}}}
IMAGE = np.full((64, 64, 3), 100, np.uint8)


class FakePolicy:
    spec, size = SPEC, 64

    def __init__(self, action=(0.5, -0.25, 0.0, 0.4, 0.5)):
        self.action = np.asarray(action, np.float32)
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def act(self, image, proprio):
        self.calls.append((image, proprio))
        return self.action


def make_loop(**cfg) -> tuple[PolicyLoop, FakePolicy, list[str]]:
    warnings: list[str] = []
    policy = FakePolicy()
    safety = {"max_linear_speed": 2.0, "max_angular_speed": 6.0, **cfg.pop("safety", {})}
    loop = PolicyLoop(policy, DeployConfig(safety=safety, **cfg), warn=warnings.append)
    return loop, policy, warnings


def feed(loop, t, stamp=None, image=IMAGE, pos=(0.55, 0.0, 0.2), yaw=0.3, opening=0.06):
    """State, gripper and image of one camera frame at time t (stamps = t unless given)."""
    stamp = t if stamp is None else stamp
    outs = [loop.on_state(pos, yaw, stamp, t), loop.on_gripper(opening, t, stamp), loop.on_image(image, stamp, t)]
    return next((o for o in reversed(outs) if o is not None), None)  # what a transport would have sent last


# ---------------------------------------------------------------------------- the loop
def test_a_new_frame_runs_the_policy_once_and_becomes_a_twist():
    loop, policy, _ = make_loop()
    out = feed(loop, 1.0)
    assert out is not None and out.fresh and out.source_stamp == 1.0
    np.testing.assert_allclose(out.command.linear, [0.2, -0.1, 0.0])  # 0.5 x 0.04 m x 10 Hz
    np.testing.assert_allclose(out.command.angular, [0, 0, 1.0])     # 0.4 x 0.25 rad x 10 Hz
    assert out.gripper_opening == pytest.approx(0.06)                # (0.5 + 1) / 2 x 0.08 m
    image, proprio = policy.calls[0]
    assert image is IMAGE
    np.testing.assert_allclose(proprio, [0.55, 0.0, 0.2, 0.3, 0.06], rtol=1e-6)
    assert loop.stats.inferences == 1 and len(loop.stats.latency_node) == 1


def test_the_frame_waits_for_a_state_as_new_as_itself():
    loop, policy, _ = make_loop()
    feed(loop, 1.0)
    loop.on_state((0.5, 0, 0.2), 0.0, 1.0, 1.1)  # state from the previous frame
    assert loop.on_image(IMAGE, 1.1, 1.1) is None and len(policy.calls) == 1
    assert loop.on_gripper(0.05, 1.101, 1.1) is None  # pose still old
    out = loop.on_state((0.6, 0, 0.2), 0.1, 1.1, 1.102)
    assert out is not None and out.fresh
    np.testing.assert_allclose(policy.calls[-1][1], [0.6, 0, 0.2, 0.1, 0.05], rtol=1e-6)


def test_frames_faster_than_the_rate_are_taken_by_the_timer_newest_first():
    loop, policy, _ = make_loop()
    feed(loop, 1.0)
    newer = np.full((64, 64, 3), 7, np.uint8)
    assert feed(loop, 1.03) is None           # 30 Hz camera, 10 Hz control
    assert feed(loop, 1.06, image=newer) is None
    assert loop.on_timer(1.07) is None        # a command went out 70 ms ago: not yet
    out = loop.on_timer(1.1)
    assert out is not None and out.fresh and policy.calls[-1][0] is newer and len(policy.calls) == 2


def test_the_timer_keeps_the_command_stream_at_the_rate():
    loop, policy, _ = make_loop()
    feed(loop, 1.0)
    out = loop.on_timer(1.08)                  # no new frame yet, still valid: same command again
    assert out is not None and not out.fresh and not out.command.is_zero


def test_timer_trigger_never_runs_on_image_arrival():
    loop, policy, _ = make_loop(trigger="timer")
    assert feed(loop, 1.0) is None and not policy.calls
    assert loop.on_timer(1.01).fresh


def test_watchdog_zeroes_within_two_periods_of_the_last_frame_and_only_once():
    loop, _, _ = make_loop()
    feed(loop, 1.0)
    t, zero_at = 1.0, None
    while t < 1.5 and zero_at is None:
        t = round(t + loop.period / 4, 6)
        out = loop.on_watchdog(t)
        if out is not None:
            assert out.command.is_zero and out.gripper_opening is None and "stale image" in out.command.reasons[0]
            zero_at = t
    assert zero_at is not None and zero_at - 1.0 <= 2 * loop.period
    assert loop.on_watchdog(zero_at + 0.025) is None          # not repeated by the watchdog
    assert loop.on_timer(zero_at + 0.1).command.is_zero       # the timer keeps sending zero
    assert not feed(loop, 1.6).command.is_zero                # a fresh frame resumes


def test_emergency_stop_is_immediate_latched_and_released_by_reset():
    loop, policy, warnings = make_loop()
    feed(loop, 1.0)
    out = loop.on_estop(True, 1.01)
    assert out.command.is_zero and "emergency stop" in out.command.reasons
    assert any("EMERGENCY STOP" in w for w in warnings)
    assert loop.on_estop(False, 1.02) is None                 # releasing the button does not release
    assert feed(loop, 1.1) is None                            # frames do not run the policy while stopped
    assert loop.on_timer(1.15).command.is_zero                # the timer keeps sending zero
    calls = len(policy.calls)
    assert loop.on_timer(1.25).command.is_zero and len(policy.calls) == calls  # the policy does not even run
    loop.on_reset(1.25)
    assert not feed(loop, 1.3).command.is_zero


@pytest.mark.parametrize("image, reason", [
    (np.zeros((48, 64, 3), np.uint8), "size 64x48"),
    (np.zeros((64, 64, 3), np.float32), "dtype float32"),
    (np.zeros((64, 64), np.uint8), "shape"),
    ("unsupported encoding '16UC1'", "16UC1"),
])
def test_bad_images_are_rejected_with_a_warning_and_never_reach_the_policy(image, reason):
    loop, policy, warnings = make_loop()
    loop.on_state((0.55, 0, 0.2), 0.0, 1.0, 1.0)
    loop.on_gripper(0.08, 1.0, 1.0)
    assert loop.on_image(image, 1.0, 1.0) is None
    assert not policy.calls and loop.stats.rejected == 1
    assert reason in warnings[0]
    out = loop.on_timer(1.1)
    assert out.command.is_zero and "no image yet" in out.command.reasons
    for k in range(5):  # repeated warnings are rate-limited
        loop.on_image(image, 1.2 + k * 0.1, 1.2 + k * 0.1)
    assert len(warnings) == 1 and loop.stats.rejected == 6


def test_calibrated_camera_size_is_accepted_and_other_sizes_can_be_configured():
    loop, policy, _ = make_loop()
    assert feed(loop, 1.0, image=np.zeros((480, 640, 3), np.uint8)).fresh
    loop, policy, warnings = make_loop(image_sizes=[[320, 240]])
    assert feed(loop, 1.0) is None and "expected one of 320x240" in warnings[0]


def test_a_stale_or_missing_state_stops_the_arm():
    loop, _, _ = make_loop()
    assert loop.on_image(IMAGE, 1.0, 1.0) is None  # no state at all: nothing to act on
    assert "no end-effector state yet" in loop.on_timer(1.1).command.reasons
    feed(loop, 2.0)
    loop.on_image(IMAGE, 2.7, 2.7)
    out = loop.on_timer(2.8)
    assert out.command.is_zero and any("stale end-effector state" in r for r in out.command.reasons)


def test_non_finite_state_is_rejected():
    loop, policy, warnings = make_loop()
    assert loop.on_state((np.nan, 0, 0.2), 0.0, 1.0, 1.0) is None
    assert loop.on_gripper(-0.01, 1.0) is None
    assert len(warnings) == 2 and loop.stats.states == 0


# ---------------------------------------------------------------------------- config
def test_config_from_yaml_with_flags_on_top(tmp_path):
    path = tmp_path / "deploy.yaml"
    path.write_text("rate_hz: 20\ntopics:\n  image: /cam/image_raw/compressed\n  twist: /a\n"
                    "safety:\n  max_linear_speed: 0.1\n  workspace_low: [0.2, -0.2, 0.0]\n")
    cfg = DeployConfig.load(path, rate_hz=None, topics={"twist": "/b", "estop": None}, safety={"max_episode_s": 5})
    assert cfg.rate_hz == 20 and cfg.compressed and cfg.topics.twist == "/b" and cfg.topics.estop == "/emergency_stop"
    assert cfg.safety.max_linear_speed == 0.1 and cfg.safety.max_episode_s == 5
    assert cfg.safety.workspace_low == (0.2, -0.2, 0.0)
    assert DeployConfig.load(None, **cfg.to_dict()) == cfg  # what --print-config prints loads back


@pytest.mark.parametrize("text, message", [
    ("rate: 10\n", "unknown setting(s) ['rate']"),
    ("topics:\n  imgae: /x\n", "topics: unknown key(s) ['imgae']"),
    ("trigger: sometimes\n", "trigger"),
    ("rate_hz: -5\n", "rate_hz"),
    ("safety:\n  max_linear_speed: 0\n", "max_linear_speed"),
    ("- a list\n", "expected a mapping"),
    ("topics: {image: ''}\n", "topics.image"),
    ("topics: {estop: /stop, reset: /stop}\n", "topics.reset: '/stop' is also topics.estop"),
    ("frame_id: ''\n", "frame_id"),
    ("gripper_joints: panda_finger_joint1\n", "gripper_joints"),
    ("image_sizes: [[0, -5]]\n", "image_sizes"),
    ("safety: {max_linear_speed: 50}\n", "max_linear_speed"),
    ("safety: {max_linear_speed: true}\n", "max_linear_speed"),
    ("safety: {workspace_low: [a, b, c]}\n", "workspace"),
    ("state_timeout_s: 60\n", "state_timeout_s"),
])
def test_bad_config_names_the_file_and_the_setting(tmp_path, text, message):
    path = tmp_path / "deploy.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        DeployConfig.load(path)
    assert str(path) in str(err.value) and message in str(err.value)


# ---------------------------------------------------------------------------- messages
def test_raw_images_decode_from_bytes_lists_and_base64_with_row_padding():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    fields = encode_image(rgb)
    assert np.array_equal(decode_image(fields["encoding"], 5, 7, 21, fields["data"]), rgb)
    b64 = base64.b64encode(fields["data"]).decode()
    assert np.array_equal(decode_image("rgb8", 5, 7, 21, b64), rgb)  # rosbridge sends uint8[] as base64
    padded = np.zeros((5, 24), np.uint8)
    padded[:, :21] = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).reshape(5, 21)
    assert np.array_equal(decode_image("bgr8", 5, 7, 24, padded.tobytes()), rgb)
    assert np.array_equal(decode_image("mono8", 5, 7, 7, rgb[:, :, 0].tobytes())[:, :, 2], rgb[:, :, 0])


@pytest.mark.parametrize("args, message", [
    (("16UC1", 2, 2, 4, bytes(8)), "unsupported encoding"),
    (("rgb8", 2, 2, 6, bytes(11)), "expected height x step"),
    (("rgb8", 2, 2, 5, bytes(10)), "shorter than a row"),
    (("rgb8", 0, 2, 6, b""), "empty image"),
    (("rgb8", 2, 2, 6, "not base64!"), "base64"),
])
def test_bad_raw_images_raise_bad_message(args, message):
    with pytest.raises(BadMessage, match=message):
        decode_image(*args)


def test_compressed_images_round_trip_and_garbage_is_refused():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :16] = (200, 30, 30)
    back = decode_compressed("jpeg", encode_compressed(rgb)["data"])
    assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).mean() < 6
    with pytest.raises(BadMessage, match="does not decode"):
        decode_compressed("jpeg", b"\xff\xd8 not really a jpeg")


@pytest.mark.parametrize("yaw", [-3.0, -0.5, 0.0, 0.7, 3.1])
def test_yaw_survives_quaternions_including_a_gripper_pointing_down(yaw):
    assert yaw_of(*quaternion_from_yaw(yaw)) == pytest.approx(yaw)
    down = (np.cos(yaw / 2), np.sin(yaw / 2), 0.0, 0.0)  # pi about x, then yaw about z (the sim robot's pose)
    assert yaw_of(*down) == pytest.approx(yaw)


def test_the_sim_robot_turns_a_twist_back_into_the_action_that_made_it():
    loop, _, _ = make_loop()
    out = feed(loop, 1.0)
    action = RobotModel.from_spec(SPEC).action(out.command.linear, out.command.angular[2], out.gripper_opening)
    np.testing.assert_allclose(action, FakePolicy().action, atol=1e-6)


def test_unstamped_messages_do_not_hold_frames_back():
    loop, _, _ = make_loop()
    loop.on_state((0.55, 0, 0.2), 0.0, 0.0, 1.0)  # stamp 0: an unstamped message
    loop.on_gripper(0.05, 1.0, None)
    assert loop.on_image(IMAGE, 5.0, 1.0).fresh


def test_reset_does_not_release_an_estop_that_still_reads_engaged():
    loop, _, warnings = make_loop()
    feed(loop, 1.0)
    loop.on_estop(True, 1.01)
    loop.on_reset(1.02)                       # an episode manager resetting: the button is still pressed
    assert feed(loop, 1.1) is None and any("still reads engaged" in w for w in warnings)
    assert loop.on_timer(1.12).command.is_zero
    loop.on_estop(False, 1.15)
    assert feed(loop, 1.2) is None and loop.on_timer(1.22).command.is_zero  # released, latched until a reset
    loop.on_reset(1.25)
    assert not feed(loop, 1.3).command.is_zero


def test_a_frozen_camera_repeating_its_stamp_does_not_feed_the_watchdog():
    loop, _, warnings = make_loop()
    feed(loop, 1.0, stamp=5.0)
    for k in range(1, 5):
        t = 1.0 + 0.1 * k
        loop.on_state((0.55, 0, 0.2), 0.3, 5.0 + 0.1 * k, t)
        loop.on_gripper(0.06, t, 5.0 + 0.1 * k)
        assert loop.on_image(IMAGE, 5.0, t) is None  # same stamp again
    assert "stamp did not advance" in warnings[0] and loop.stats.rejected == 4
    assert loop.on_timer(1.5).command.is_zero


def test_a_pose_in_another_frame_is_dropped_and_a_stale_gripper_stops_the_arm():
    loop, _, warnings = make_loop()
    assert loop.on_state((0.55, 0, 0.2), 0.3, 1.0, 1.0, frame="camera_link") is None
    assert "frame 'camera_link'" in warnings[0] and loop._state is None
    feed(loop, 2.0)
    loop.on_state((0.55, 0, 0.2), 0.3, 2.3, 2.3)
    loop.on_image(IMAGE, 2.3, 2.3)                # pose and image fresh, gripper 0.3 s old
    out = loop.on_timer(2.35)
    assert out.command.is_zero and any("stale gripper state" in r for r in out.command.reasons)


def test_a_loop_slower_than_the_policy_rate_is_refused():
    with pytest.raises(ValueError, match="below the policy's control rate"):
        make_loop(rate_hz=5.0)


def test_the_required_estop_publisher_must_be_there():
    loop, _, _ = make_loop(estop_required=True)
    loop.estop_connected = False
    assert feed(loop, 1.0) is None and "no e-stop publisher" in " ".join(loop.on_timer(1.05).command.reasons)
    loop.estop_connected = True
    assert not feed(loop, 1.1).command.is_zero
