"""Rollouts in parallel worker processes: expert demonstrations, DAgger (student acts, expert
labels) and evaluation.

Work is cut into *chunks* of consecutive episodes; a chunk's first reset uses its own seed (which
rebuilds the world from that seed) and the rest follow from it. A chunk's episodes therefore depend
only on its seed, never on which worker ran it or how many workers there were: seeded collection
is reproducible.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from sim2real.data.episodes import MAX_OBJECT_POINTS, Episode

MODES = ("expert", "dagger", "eval", "views")


@dataclass
class Chunk:
    """Episodes to run in one worker call.

    mode: "expert" (expert acts and labels), "dagger" (the policy acts with probability 1 - beta,
    the expert labels every state), "eval" (the policy acts; no expert, nothing recorded),
    "views" (no episode: each reset is a fresh randomized layout, seen with the gripper teleported
    to ``views`` random poses above the tray; labels from the expert's first-choice grasp. Cheap,
    diverse data for encoder pretraining: an episode shows one layout, this shows hundreds).
    alt_prob: probability that a recorded step also gets a render under another randomization;
    views_near: fraction of "views" poses placed low and near an object (``NEAR_*``) instead of
    anywhere above the tray.
    """

    env_kwargs: dict
    seed: int
    episodes: int
    mode: str = "expert"
    policy: bytes | None = None
    beta: float = 0.0
    alt_prob: float = 0.0
    tag: int = 0
    views: int = 4
    views_near: float = 0.0


@dataclass
class Result:
    success: bool
    steps: int
    episode: Episode | None = None
    seed: int | None = None
    objects: str = ""
    info: dict = field(default_factory=dict)
    tray: str = ""  # what the tray wears (``envs.textures.texture_kind``); episodes only, not views


_CACHE: dict = {}


def _env(env_kwargs: dict):
    import gymnasium as gym

    import envs  # noqa: F401 - registers the ids

    key = repr(sorted(env_kwargs.items(), key=lambda kv: kv[0]))
    if _CACHE.get("env_key") != key:
        if "env" in _CACHE:
            _CACHE["env"].close()
        kwargs = dict(env_kwargs)
        env_id = kwargs.pop("id", "PandaGrasp-v0")
        _CACHE["env"] = gym.make(env_id, disable_env_checker=True, **kwargs)
        _CACHE["env_key"] = key
    return _CACHE["env"]


def _policy(blob: bytes | None):
    if blob is None:
        return None
    import hashlib

    import torch

    from policies.policy import GraspPolicy

    digest = hashlib.sha1(blob).hexdigest()
    if _CACHE.get("policy_key") != digest:
        ckpt = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        _CACHE["policy"] = GraspPolicy.from_checkpoint(ckpt)
        _CACHE["policy_key"] = digest
    return _CACHE["policy"]


def policy_bytes(policy) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(policy.checkpoint(), buf)
    return buf.getvalue()


def run_chunk(chunk: Chunk) -> list[Result]:
    """Run one chunk in this process (the worker entry point)."""
    from envs.expert import ScriptedExpert

    if chunk.mode not in MODES:
        raise ValueError(f"mode: must be one of {MODES}, got {chunk.mode!r}")
    env = _env(chunk.env_kwargs)
    policy = _policy(chunk.policy)
    if chunk.mode in ("dagger", "eval") and policy is None:
        raise ValueError(f"mode {chunk.mode!r} needs a policy")
    expert = ScriptedExpert(env, plan=chunk.mode != "views") if chunk.mode != "eval" else None
    rng = np.random.default_rng([chunk.seed, 7919])  # alt renders, the DAgger mixture, view poses
    out = []
    for k in range(chunk.episodes):
        seed = chunk.seed if k == 0 else None
        if chunk.mode == "views":
            out.append(_views(env, expert, chunk, rng, seed))
        else:
            out.append(_episode(env, expert, policy, chunk, rng, seed))
    return out


VIEW_LOW = np.array([0.42, -0.14, 0.04, -0.8])   # x, y, z (m), yaw (rad) of teleported gripper poses
VIEW_HIGH = np.array([0.68, 0.14, 0.25, 0.8])
# "Near" views: the gripper low (z in m) within NEAR_RADIUS m (horizontally) of a random object.
# These are the states a student's misses end in - hand low, beside or between objects - which
# expert demonstrations (always converging on the object) almost never show. (Measured: half the
# views placed so did not raise held-out success; README, ablations.)
NEAR_RADIUS, NEAR_Z = 0.10, (0.03, 0.10)


class _Recorder:
    """Per-step rows of one episode: observation, executed action, the expert's label and its
    privileged targets, and (with probability ``alt_prob``) a render under another randomization."""

    def __init__(self, genv, expert, alt_prob: float, rng: np.random.Generator, restore: bool = True) -> None:
        self.genv, self.expert, self.alt_prob, self.rng, self.restore = genv, expert, alt_prob, rng, restore
        self.rows: dict[str, list] = {k: [] for k in ("images", "proprio", "action", "expert_action", "object",
                                                      "grasp", "image_points", "object_points", "images_alt",
                                                      "has_alt")}

    def add(self, obs: dict, label: np.ndarray, action: np.ndarray | None = None, camera=None) -> None:
        """One step; ``camera``: the one that took ``obs["image"]`` (default: the episode's own)."""
        rows = self.rows
        targets = self.expert.target_labels()
        nan4 = np.full(4, np.nan, np.float32)
        rows["images"].append(obs["image"])
        rows["proprio"].append(obs["proprio"])
        rows["action"].append(action)
        rows["expert_action"].append(label)
        rows["object"].append(targets[0] if targets else nan4)
        rows["grasp"].append(targets[1] if targets else nan4)
        camera = camera or self.genv.camera
        rows["image_points"].append(image_points(camera, targets[1][:3] if targets else None, obs["proprio"][:3]))
        rows["object_points"].append(object_points(camera, self.genv))
        alt = self.alt_prob > 0 and self.rng.random() < self.alt_prob
        rows["images_alt"].append(self.genv.render_alternative(self.rng, restore=self.restore) if alt
                                  else np.zeros_like(obs["image"]))
        rows["has_alt"].append(alt)

    def episode(self, **fields) -> Episode:
        r = self.rows
        actions = None if r["action"][0] is None else np.stack(r["action"]).astype(np.float32)
        return Episode(images=np.stack(r["images"]), proprio=np.stack(r["proprio"]).astype(np.float32),
                       action=actions, expert_action=np.stack(r["expert_action"]).astype(np.float32),
                       object=np.stack(r["object"]), grasp=np.stack(r["grasp"]),
                       image_points=np.stack(r["image_points"]), object_points=np.stack(r["object_points"]),
                       images_alt=np.stack(r["images_alt"]), has_alt=np.array(r["has_alt"]), **fields)


def image_points(camera, grasp: np.ndarray | None, hand: np.ndarray) -> np.ndarray:
    """Where ``camera`` sees the grasp point and the hand (base frame, m), as fractions of the image
    width and height: float32 (4,) u, v, u, v, NaN for an unknown point or one outside the image.

    Recorded with the frame's own randomized camera, these are the keypoint targets; computed from
    the nominal camera instead they were off by a median 4.6 px of 64 under full camera jitter.
    They are for the state at the step: a frame the sensor model delayed shows the hand one step
    earlier (the same holds for the proprio and labels recorded beside it)."""
    return _image_fractions(camera, [grasp, hand])


def _image_fractions(camera, points: list) -> np.ndarray:
    """Points (base frame, m; None = unknown) -> float32 (2 x len,) u, v fractions of ``camera``'s
    image, NaN for an unknown point or one outside the image."""
    out = np.full(2 * len(points), np.nan, np.float32)
    i = camera.intrinsics
    for k, point in enumerate(points):
        if point is None or not np.isfinite(point).all():
            continue
        uv = camera.project(np.asarray(point, float)[None])[0] / (i.width, i.height)
        if np.all((uv >= 0) & (uv <= 1)):
            out[2 * k:2 * k + 2] = uv
    return out


def object_points(camera, genv) -> np.ndarray:
    """Where ``camera`` sees every object on the tray: float32 (2 x MAX_OBJECT_POINTS,) u, v per
    object as fractions of the image (``image_points``), NaN for a missing, fallen or unseen one.
    Each object's point is the centre of its bounding box at the height the expert would grasp
    it (``grasp_height``): targets for a detector of *all* graspable objects, where the grasp
    point names only the expert's choice. A scene with more objects than the format's columns
    (``num_objects`` above MAX_OBJECT_POINTS) is recorded as all unknown: listing only some would
    teach the detector that the others are background."""
    from envs.expert import grasp_height

    points: list = [None] * MAX_OBJECT_POINTS
    if len(genv.scene.active) > MAX_OBJECT_POINTS:
        return _image_fractions(camera, points)
    for k, name in enumerate(genv.scene.active):
        low, high = genv.sim.aabb(name)
        if high[2] >= 0:  # (not fallen off the table)
            points[k] = np.array([0.5 * (low[0] + high[0]), 0.5 * (low[1] + high[1]), grasp_height(low, high)])
    return _image_fractions(camera, points)


def _objects(genv) -> str:
    return ",".join(str(genv.privileged_state()[n]["object_id"]) for n in genv.scene.active)


def _views(env, expert, chunk: Chunk, rng: np.random.Generator, seed: int | None) -> Result:
    env.reset(seed=seed)
    genv = env.unwrapped
    objects = _objects(genv)
    # Only the first view shows the layout's own appearance (rendered at reset); every later one
    # draws a fresh appearance, so nothing is restored in between and no own-appearance image is
    # rendered for them (identical data, about a fifth less view-collection time).
    recorder = _Recorder(genv, expert, chunk.alt_prob, rng, restore=False)
    on_tray = [genv.privileged_state()[n]["position"][:2] for n in genv.scene.active]
    for k in range(chunk.views):
        pose = rng.uniform(VIEW_LOW, VIEW_HIGH)
        # (No draw at all when off, so the default views stay what they were.)
        if chunk.views_near > 0 and on_tray and rng.random() < chunk.views_near:
            centre = on_tray[rng.integers(len(on_tray))]
            r, phi = NEAR_RADIUS * np.sqrt(rng.random()), rng.uniform(-np.pi, np.pi)
            pose[:2] = np.clip(centre + r * np.array([np.cos(phi), np.sin(phi)]), VIEW_LOW[:2], VIEW_HIGH[:2])
            pose[2] = rng.uniform(*NEAR_Z)
        opening = 0.08 if rng.random() < 0.8 else float(rng.uniform(0.0, 0.08))
        genv.robot.reset(pose[:3], float(pose[3]), opening)
        expert.reset()
        label = expert.act()  # plans (nearest first, no rehearsal) from this pose
        genv.params.sensor.reset()  # no frame delay / drop across teleports
        camera = None  # the layout's own
        if k == 0:
            obs = genv._observation()
        else:  # every further view of the layout under a fresh appearance: cheap diversity
            image, camera = genv.render_alternative(rng, return_camera=True, restore=False)
            obs = {"image": image, "proprio": genv.robot.proprio()}
        recorder.add(obs, label, camera=camera)
    ep = recorder.episode(success=None, source="sim-views", seed=seed, objects=objects)
    return Result(success=False, steps=chunk.views, episode=ep, seed=seed, objects=objects)


def _episode(env, expert, policy, chunk: Chunk, rng: np.random.Generator, seed: int | None) -> Result:
    from envs.textures import texture_kind

    obs, _ = env.reset(seed=seed)
    genv = env.unwrapped
    objects = _objects(genv)
    tray = texture_kind(genv.params.textures.get("tray", "white"))
    recorder = _Recorder(genv, expert, chunk.alt_prob, rng) if chunk.mode != "eval" else None
    if expert is not None:
        expert.reset()
    steps = 0
    while True:
        label = expert.act() if expert is not None else None
        if chunk.mode == "expert":
            action = label
        else:
            use_expert = chunk.mode == "dagger" and rng.random() < chunk.beta
            action = label if use_expert else policy.act(obs["image"], obs["proprio"])
        if recorder is not None:
            recorder.add(obs, label, action)
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        if terminated or truncated:
            break
    success = bool(info["is_success"])
    episode = None if recorder is None else recorder.episode(success=success, source=f"sim-{chunk.mode}",
                                                                 seed=seed, objects=objects)
    return Result(success=success, steps=steps, episode=episode, seed=seed, objects=objects, tray=tray)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


class RolloutPool:
    """``workers`` processes (spawned, one env each); ``workers <= 1`` runs in this process."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))
        self._pool = None
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker)

    def map(self, chunks: list[Chunk]) -> Iterator[list[Result]]:
        """Results per chunk, in order."""
        if self._pool is None:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # what a worker would use; keeps timings comparable
            try:
                for c in chunks:
                    yield run_chunk(c)
            finally:
                torch.set_num_threads(threads)
        else:
            yield from self._pool.map(run_chunk, chunks)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> RolloutPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_chunks(base_seed: int, episodes: int, chunk_size: int, tag: int, **kw) -> list[Chunk]:
    """Split ``episodes`` into chunks with seeds derived from (base_seed, tag, chunk index)."""
    chunks, k = [], 0
    while episodes > 0:
        n = min(chunk_size, episodes)
        seed = int(np.random.SeedSequence([base_seed, tag, k]).generate_state(1)[0])
        chunks.append(Chunk(seed=seed, episodes=n, tag=tag, **kw))
        episodes -= n
        k += 1
    return chunks


def collect_episodes(pool: RolloutPool, root, meta: dict, chunks: list[Chunk], progress: str | None = None,
                     log: Callable[[str], None] = print):
    """Roll ``chunks`` out into the episode folder ``root`` (an ``EpisodeWriter`` with ``meta``);
    returns the writer and the new results. A folder that already holds episodes (an interrupted
    run) resumes: whole chunks on disk are skipped (a chunk's episodes depend only on its seed),
    a partial one is dropped and recollected."""
    from sim2real.data.episodes import EpisodeWriter

    writer = EpisodeWriter(root, meta=meta)
    have = writer.num_episodes
    skip_chunks, count = 0, 0
    for c in chunks:
        if count + c.episodes > have:
            break
        count += c.episodes
        skip_chunks += 1
    if count < have:
        log(f"{root}: {have - count} episodes of an unfinished chunk will be recollected")
        writer.keep_first(count)
    results = collect(pool, chunks[skip_chunks:], on_result=lambda r: writer.append(r.episode), progress=progress)
    return writer, results


def collect(pool: RolloutPool, chunks: list[Chunk], on_result: Callable[[Result], None] | None = None,
            progress: str | None = None) -> list[Result]:
    """Run chunks, calling ``on_result`` for each episode in order; a tqdm bar if ``progress``."""
    from tqdm.auto import tqdm

    total = sum(c.episodes for c in chunks)
    results = []
    with tqdm(total=total, desc=progress, disable=progress is None, unit="ep", leave=False) as bar:
        for chunk_results in pool.map(chunks):
            for r in chunk_results:
                if on_result is not None:
                    on_result(r)
                results.append(r)
                bar.update(1)
            ok = sum(r.success for r in results)
            bar.set_postfix(success=f"{ok}/{len(results)}")
    return results
