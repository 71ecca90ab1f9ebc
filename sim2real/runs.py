"""Run directories: self-describing, never overwritten by accident, written atomically.

A run directory holds ``config.json`` (every setting, package versions, git commit), ``state.json``
(which stages are done: what ``--resume`` reads), weights, ``metrics.json`` and pictures. Every file
is written to a temporary name and renamed, so an interrupted run never leaves a half-written file
where a good one was.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class RunError(RuntimeError):
    """A run directory cannot be used as asked (exists, not writable, corrupt checkpoint)."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n").encode())


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    import torch  # here, not at module level: the data format uses this module without torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load`` with ``weights_only=True`` (never executes code from the file); a damaged
    file raises ``RunError`` naming it."""
    import torch

    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise RunError(f"{path}: corrupt or unreadable checkpoint ({type(e).__name__}: {e})") from None


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def environment_info() -> dict[str, Any]:
    """Package versions, Python, platform and the git commit of this checkout (if any)."""
    from importlib import metadata

    import torch

    versions = {}
    for pkg in ("sim2real", "torch", "numpy", "gymnasium", "stable-baselines3", "pybullet",
                "opencv-python-headless"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    root = Path(__file__).resolve().parent.parent
    commit, dirty = None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                                    text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"versions": versions, "python": sys.version.split()[0], "platform": platform.platform(),
            "git_commit": commit, "git_dirty": dirty, "torch_threads": torch.get_num_threads()}


class RunDir:
    """A run directory.

    ``RunDir.create(path, overwrite=False, resume=False)``:
      - new path: created;
      - existing run + ``resume``: reopened, finished stages are skipped by the caller;
      - existing run + ``overwrite``: moved aside to ``<path>.old-<time>`` first (nothing is
        deleted until the new run has written its config), then replaced;
      - existing non-empty path otherwise: ``RunError`` and nothing is touched.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, overwrite: bool = False, resume: bool = False) -> RunDir:
        path = Path(path)
        if overwrite and resume:
            raise RunError("--overwrite and --resume exclude each other")
        exists = path.exists() and (not path.is_dir() or any(path.iterdir()))
        if path.exists() and not path.is_dir():
            raise RunError(f"{path}: exists and is not a directory")
        if exists and resume:
            if not (path / "config.json").exists():
                raise RunError(f"{path}: cannot resume, no config.json (not a run directory)")
            return cls(path)
        if exists and not overwrite:
            raise RunError(f"{path}: already exists; pass --resume to continue it or --overwrite to replace it "
                           f"(the old run is then kept as {path.name}.old-<time> until the new one starts)")
        if resume and not exists:
            raise RunError(f"{path}: nothing to resume (no such run)")
        if exists:
            aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            path.rename(aside)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise RunError(f"{path}: not writable ({e.strerror})") from None
        return cls(path)

    def discard_old(self) -> None:
        """Delete runs moved aside by ``--overwrite`` once the new run is established."""
        for old in self.path.parent.glob(f"{self.path.name}.old-*"):
            shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------------------ state
    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def read_json(self, name: str, default: Any = None) -> Any:
        p = self.path / name
        if not p.exists():
            return default
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise RunError(f"{p}: corrupt JSON ({e})") from None

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_json(self.path / name, data)

    def stages_done(self) -> dict[str, Any]:
        return self.read_json("state.json", {}).get("stages", {})

    def mark_done(self, stage: str, info: Any = True) -> None:
        state = self.read_json("state.json", {})
        state.setdefault("stages", {})[stage] = info
        self.write_json("state.json", state)
