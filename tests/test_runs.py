"""Run directories: never overwritten by accident, atomic writes, safe checkpoint loading."""

import os

import pytest
import torch

from sim2real.runs import RunDir, RunError, atomic_torch_save, environment_info, safe_torch_load


def test_existing_run_is_refused_and_left_intact(tmp_path):
    run = RunDir.create(tmp_path / "r")
    run.write_json("config.json", {"a": 1})
    with pytest.raises(RunError, match="already exists.*--resume.*--overwrite"):
        RunDir.create(tmp_path / "r")
    assert run.read_json("config.json") == {"a": 1}


def test_overwrite_moves_the_old_run_aside_until_discarded(tmp_path):
    run = RunDir.create(tmp_path / "r")
    run.write_json("config.json", {"a": 1})
    new = RunDir.create(tmp_path / "r", overwrite=True)
    assert not (new / "config.json").exists()
    old = list(tmp_path.glob("r.old-*"))
    assert len(old) == 1 and (old[0] / "config.json").exists()
    new.discard_old()
    assert not list(tmp_path.glob("r.old-*"))


def test_resume_needs_a_run(tmp_path):
    with pytest.raises(RunError, match="nothing to resume"):
        RunDir.create(tmp_path / "none", resume=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    with pytest.raises(RunError, match="no config.json"):
        RunDir.create(tmp_path / "junk", resume=True)
    with pytest.raises(RunError, match="exclude"):
        RunDir.create(tmp_path / "x", resume=True, overwrite=True)


def test_not_writable():
    # /proc refuses new directories even for root, so this holds on any CI machine.
    with pytest.raises(RunError, match="not writable"):
        RunDir.create("/proc/sim2real-test/run")


def test_out_below_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunError):
        RunDir.create(tmp_path / "afile" / "run")
    with pytest.raises(RunError, match="not a directory"):
        RunDir.create(tmp_path / "afile")


def test_checkpoints_round_trip_and_corruption_is_named(tmp_path):
    atomic_torch_save({"w": torch.ones(3)}, tmp_path / "c.pt")
    assert torch.equal(safe_torch_load(tmp_path / "c.pt")["w"], torch.ones(3))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    (tmp_path / "bad.pt").write_bytes(b"garbage" * 10)
    with pytest.raises(RunError, match="bad.pt: corrupt"):
        safe_torch_load(tmp_path / "bad.pt")
    with pytest.raises(RunError, match="not found"):
        safe_torch_load(tmp_path / "missing.pt")


def test_code_in_a_checkpoint_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(RunError):
        safe_torch_load(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_environment_info_lists_versions():
    info = environment_info()
    assert info["versions"]["torch"] and info["python"]
