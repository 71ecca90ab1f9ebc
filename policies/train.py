"""The learning-in-simulation pipeline behind ``scripts/train_sim.py``.

Stages, each recorded in the run's ``state.json`` so ``--resume`` skips what is done:

1. ``expert``    scripted-expert demonstrations on training objects under full randomization, with
                 paired renders for the invariance objective -> ``data/expert`` (episode format);
   ``views``     many more randomized layouts, each seen with the gripper at a few random poses
                 under fresh appearances, labelled by the (state-based) expert -> ``data/views``;
2. ``pretrain``  encoder pretraining on privileged labels (object position + grasp yaw, grasp relative
                 to the hand, grasp-point and gripper keypoints, grasp outcome) and randomization
                 invariance -> ``encoder.pt`` (the encoder alone);
3. ``bc``        behaviour cloning of the expert from image + proprio (the grasp head the servo
                 policy acts on, and the action head) -> ``policy.pt``;
4. ``dagger_k``  the student drives (mixed with the expert with probability beta_k), the expert
                 relabels every visited state -> ``data/dagger_k``; retrain on everything;
5. ``rl``        (``--algo ppo|sac``) SB3 on top of the pretrained encoder, warm-started from BC;
6. ``evaluate``  closed loop from pixels under full randomization on held-out and training objects
                 -> ``metrics.json``; then the learning-curve PNG and a rollout GIF.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.config import check_int, check_probability
from policies.encoders import EncoderSpec
from policies.imitation import Buffer, FitConfig, fit
from policies.policy import CONTROLS, GraspPolicy, ServoLaw, check_grasp_modes
from policies.rollout import Chunk, Result, RolloutPool, collect, collect_episodes, make_chunks, policy_bytes
from sim2real.data.episodes import OBJECT_POINTS, csv_header, read_dataset
from sim2real.runs import RunDir, RunError, environment_info
from sim2real.stats import success_summary

ALGOS = ("dagger", "bc", "ppo", "sac")
# Loss weights (see policies.imitation): pretraining learns where things are and what they look like
# whatever the randomization; policy fitting keeps those objectives on as regularizers.
PRETRAIN_WEIGHTS = {"keypoints": 1.0, "objects": 1.0, "object": 1.0, "grasp": 1.0, "outcome": 0.2, "invariance": 0.2}
POLICY_WEIGHTS = {"action": 1.0, "grasp": 2.0, "keypoints": 0.5, "objects": 0.5, "object": 0.3, "outcome": 0.05,
                  "invariance": 0.05}
PRESETS = ("smoke", "default", "full")


@dataclass
class TrainConfig:
    """Every setting of a training run (saved as ``config.json``).

    preset: the named starting point; algo: "dagger" (BC then DAgger, default), "bc" (BC only),
    "ppo" / "sac" (SB3 RL on the pretrained encoder, warm-started from BC); seed: everything derives
    from it; workers: rollout processes; camera: ROS camera_info YAML (with the camera pose in the
    base frame) used instead of the default camera; image_size: policy input side, px;
    randomization: training randomization preset; expert_episodes: demonstrations;
    alt_prob: fraction of recorded steps with a paired render; views_layouts / views_per_layout /
    views_near: randomized layouts seen with the gripper teleported, poses per layout, and the
    fraction of poses placed low near an object (``policies.rollout.NEAR_*``); dagger_rounds / dagger_episodes /
    dagger_beta: DAgger schedule (beta = probability the expert acts in round k: one per round, or one
    number for every round); eval_episodes /
    eval_train_episodes: closed-loop evaluation on held-out / training objects; eval_randomization:
    the preset evaluation uses ("full" is the reported protocol; others are for diagnosis); rl_steps: env steps
    of SB3 training; gif_episodes: episodes in the rollout GIF; grasp_prior: give the encoder the
    run's camera so its grasp-point map prefers the object nearest the gripper (``GraspPointPrior``);
    control: "servo" (estimated grasp + the expert's control law) or "direct" (action head), see
    ``policies.policy``; RL (ppo / sac) always ends with "direct"; grasp_modes: hypotheses of the
    grasp head, trained winner-takes-all (``policies.policy.GraspHead``); grasp_geometry: the
    grasp estimate is the camera-geometry offset of the grasp-point keypoint plus a learned
    residual (``policies.policy.GraspGeometry``; needs ``grasp_prior`` for the camera); servo:
    the constants of the servo law the student acts with (``policies.policy.ServoLaw``; default
    the student's, ``--set servo.xy_tol=0.006`` etc. to change one).
    """

    preset: str = "default"
    algo: str = "dagger"
    seed: int = 0
    workers: int = 2
    camera: str | None = None
    image_size: int = 64
    randomization: str = "full"
    chunk_size: int = 25
    expert_episodes: int = 1000
    views_layouts: int = 2500
    views_per_layout: int = 4
    views_near: float = 0.0
    alt_prob: float = 0.3
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    pretrain: FitConfig = field(default_factory=lambda: FitConfig(
        steps=500, batch=128, lr=2e-3, encoder_lr=2e-3,
        weights=dict(PRETRAIN_WEIGHTS)))
    bc: FitConfig = field(default_factory=lambda: FitConfig(
        steps=800, batch=128, lr=1e-3, encoder_lr=5e-4,
        weights=dict(POLICY_WEIGHTS)))
    # One round: with the same data, 0 / 1 / 2 / 4 rounds gave 58.0 / 59.5 / 52.5 / 46.5 % held-out
    # success (README, Results) - later rounds add states the image cannot disambiguate.
    dagger_rounds: int = 1
    dagger_episodes: int = 150
    dagger_beta: tuple[float, ...] = (0.3,)
    dagger_fit: FitConfig = field(default_factory=lambda: FitConfig(
        steps=500, batch=128, lr=5e-4, encoder_lr=3e-4,
        weights=dict(POLICY_WEIGHTS)))
    rl_steps: int = 20000
    eval_episodes: int = 200
    eval_train_episodes: int = 100
    eval_randomization: str = "full"
    gif_episodes: int = 3
    grasp_prior: bool = True
    control: str = "servo"
    grasp_modes: int = 1
    grasp_geometry: bool = True
    servo: ServoLaw = field(default_factory=ServoLaw.student)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset: must be one of {PRESETS}, got {self.preset!r}")
        if self.algo not in ALGOS:
            raise ValueError(f"algo: must be one of {ALGOS}, got {self.algo!r}")
        if self.control not in CONTROLS:
            raise ValueError(f"control: must be one of {CONTROLS}, got {self.control!r}")
        check_grasp_modes(self.grasp_modes)
        if not isinstance(self.servo, ServoLaw):  # a mapping (config.json, --set, code)
            self.servo = ServoLaw.from_dict(self.servo)
        for name in ("workers", "image_size", "chunk_size", "expert_episodes", "eval_episodes"):
            check_int(name, getattr(self, name), 1)
        for name in ("dagger_rounds", "dagger_episodes", "eval_train_episodes", "rl_steps", "gif_episodes",
                     "views_layouts", "views_per_layout"):
            check_int(name, getattr(self, name), 0)
        for name in ("alt_prob", "views_near"):
            check_probability(name, getattr(self, name))
        beta = self.dagger_beta
        if isinstance(beta, int | float) and not isinstance(beta, bool):  # one number: every round's
            beta = (beta,) * max(1, self.dagger_rounds)
        if isinstance(beta, str | bytes | dict) or not isinstance(beta, Iterable):
            raise ValueError("dagger_beta: the expert's chance of acting, one number in [0, 1] per DAgger round "
                             f"(or one for all rounds), got {beta!r}")
        self.dagger_beta = tuple(check_probability(f"dagger_beta[{k}]", b) for k, b in enumerate(beta))
        if len(self.dagger_beta) < self.dagger_rounds:
            raise ValueError(f"dagger_beta: {len(self.dagger_beta)} value(s) for dagger_rounds={self.dagger_rounds}; "
                             f"give one per round (or one number for all), got {list(self.dagger_beta)}")
        if self.grasp_geometry and not (self.grasp_prior and self.encoder.keypoints):
            # Without the prior the encoder has no camera (and without keypoints no grasp-point
            # map) to back-project through: the option would silently do nothing.
            raise ValueError("grasp_geometry: needs grasp_prior=true and encoder.keypoints >= 1, got "
                             f"grasp_prior={self.grasp_prior}, encoder.keypoints={self.encoder.keypoints} "
                             "(set grasp_geometry=false to train without the geometric estimate)")
        if self.camera is not None and not Path(self.camera).is_file():
            raise ValueError(f"camera: no such file {self.camera!r}")
        if self.encoder.image_size != self.image_size:
            self.encoder = dataclasses.replace(self.encoder, image_size=self.image_size)
        camera = run_camera(self.camera).to_dict() if self.grasp_prior else None
        if self.encoder.camera != camera:
            self.encoder = dataclasses.replace(self.encoder, camera=camera)

    @classmethod
    def preset_config(cls, name: str, **overrides: Any) -> TrainConfig:
        """The named preset with ``overrides`` (None values ignored)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if name == "smoke":
            base = dict(expert_episodes=12, views_layouts=6, views_per_layout=2, alt_prob=0.3, chunk_size=6,
                        dagger_rounds=1, dagger_episodes=6, dagger_beta=(0.5,), eval_episodes=6,
                        eval_train_episodes=4, rl_steps=256, gif_episodes=1,
                        pretrain=FitConfig(steps=20, batch=32, weights=dict(PRETRAIN_WEIGHTS)),
                        bc=FitConfig(steps=30, batch=32), dagger_fit=FitConfig(steps=20, batch=32))
        elif name == "full":
            base = dict(expert_episodes=3000, views_layouts=8000, dagger_rounds=1, dagger_episodes=400,
                        dagger_beta=(0.3,),
                        eval_episodes=500, eval_train_episodes=200,
                        pretrain=FitConfig(steps=2000, batch=128, lr=2e-3, encoder_lr=2e-3,
                                           weights=dict(PRETRAIN_WEIGHTS)),
                        bc=FitConfig(steps=5000, batch=128, lr=1e-3, encoder_lr=5e-4,
                                     weights=dict(POLICY_WEIGHTS)),
                        dagger_fit=FitConfig(steps=2500, batch=128, lr=5e-4, encoder_lr=3e-4,
                                             weights=dict(POLICY_WEIGHTS)))
        elif name == "default":
            base = {}
        else:
            raise ValueError(f"preset: must be one of {PRESETS}, got {name!r}")
        base.update(overrides)
        return cls(preset=name, **base)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["dagger_beta"] = list(self.dagger_beta)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        data["encoder"] = EncoderSpec.from_dict(data.get("encoder", {}))
        for name in ("pretrain", "bc", "dagger_fit"):
            if name in data:
                data[name] = FitConfig(**data[name])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"train config: unknown fields {sorted(unknown)}")
        return cls(**data)

    def env_kwargs(self, objects: str = "train") -> dict:
        kw = {"image_size": self.image_size, "randomization": self.randomization, "objects": objects}
        if self.camera:
            kw["camera"] = str(self.camera)
        return kw


def run_settings(config: dict, domain: str = "sim") -> dict:
    """A run directory's ``config.json`` -> the training settings its evaluation in ``domain`` uses
    (``eval_env_kwargs``). A run fine-tuned in simulation for a calibrated camera
    (``sim2real.transfer.simtune``; ``adapt.sim_tuned``) has that camera's geometry, so simulation
    shows it through that calibration (``adapt.camera``); the proxy-real rig stays mounted off the
    training camera, as it was when the data was recorded."""
    train, adapt = config["train"], config.get("adapt") or {}
    if domain == "sim" and adapt.get("sim_tuned") and adapt.get("camera"):
        return {**train, "camera": adapt["camera"]}
    return train


def eval_env_kwargs(run_config: dict, objects: str, domain: str = "sim",
                    proxy_without: tuple[str, ...] = ()) -> dict:
    """Evaluation is from pixels under the *full* preset (unless a diagnostic run asked otherwise),
    with the run's camera and image size; ``domain="proxy_real"`` evaluates in the proxy-real
    target domain (``envs.proxy_real``) instead of the simulator, less its ``proxy_without`` parts
    (``envs.config.PROXY_PARTS``)."""
    kw = {"image_size": run_config["image_size"], "randomization": run_config.get("eval_randomization", "full"),
          "objects": objects, "domain": domain}
    if proxy_without:
        kw["proxy_without"] = tuple(proxy_without)
    if run_config.get("camera"):
        kw["camera"] = run_config["camera"]
    return kw


# ------------------------------------------------------------------------------ stages
class Trainer:
    """Runs (or resumes) the pipeline in ``run``; ``log`` receives one-line progress messages."""

    def __init__(self, cfg: TrainConfig, run: RunDir, log=print) -> None:
        self.cfg, self.run, self.log = cfg, run, log
        self.curve: list[dict] = run.read_json("curve.json", [])
        self.t0 = time.time()
        self.elapsed_before = float(run.read_json("state.json", {}).get("wall_time_s", 0.0))

    def _curve(self, stage: str, rows: list[dict]) -> None:
        self.curve += [{"stage": stage, **r} for r in rows]
        self.run.write_json("curve.json", self.curve)

    def _done(self, stage: str, info: Any = True) -> None:
        self.run.mark_done(stage, info)
        state = self.run.read_json("state.json", {})
        state["wall_time_s"] = self.elapsed_before + time.time() - self.t0
        self.run.write_json("state.json", state)

    def run_all(self) -> dict:
        cfg, run = self.cfg, self.run
        torch.manual_seed(cfg.seed)
        done = run.stages_done()
        buffer = Buffer()
        with RolloutPool(cfg.workers) as pool:
            # 1. expert demonstrations, then many cheap randomized views
            for mode, tag, count in (("expert", 1, cfg.expert_episodes), ("views", 2, cfg.views_layouts)):
                if count == 0:
                    continue
                if mode not in run.stages_done():
                    self._collect(pool, run / "data" / mode, mode, tag=tag, episodes=count)
                buffer.add_dataset(read_dataset(run / "data" / mode, image_size=cfg.image_size))
            done = run.stages_done()
            self.log(f"training rows: {len(buffer)}; expert success {done['expert']['success_rate']:.1%}")

            # 2. encoder pretraining
            if "pretrain" not in done:
                torch.manual_seed(cfg.seed)
                policy = GraspPolicy(cfg.encoder, control=cfg.control, grasp_modes=cfg.grasp_modes,
                                     geometry=cfg.grasp_geometry, servo=cfg.servo)
                hist = fit(policy, buffer, cfg.pretrain, seed=cfg.seed, progress="pretrain encoder")
                self._curve("pretrain", hist)
                from policies.encoders import save_encoder
                save_encoder(run / "encoder.pt", policy.encoder, extra={"trained_on": "sim", "stage": "pretrain",
                                                                         "losses": hist[-1] if hist else {}})
                policy.save(run / "pretrained_policy.pt")
                self._done("pretrain", hist[-1] if hist else {})
            else:
                policy = GraspPolicy.load(run / "pretrained_policy.pt")

            # 3. behaviour cloning
            if "bc" not in done:
                hist = fit(policy, buffer, cfg.bc, seed=cfg.seed + 1, progress="behaviour cloning")
                self._curve("bc", hist)
                policy.save(run / "policy.pt", extra={"stage": "bc"})
                self._done("bc", hist[-1] if hist else {})
            else:
                policy = GraspPolicy.load(run / "policy.pt")

            # 4. DAgger
            if cfg.algo in ("dagger", "ppo", "sac"):
                for k in range(cfg.dagger_rounds):
                    stage = f"dagger_{k + 1}"
                    ddir = run / "data" / stage
                    if stage not in done:
                        self._collect(pool, ddir, "dagger", tag=10 + k, episodes=cfg.dagger_episodes,
                                      policy=policy, beta=cfg.dagger_beta[k])
                    buffer.add_dataset(read_dataset(ddir, image_size=cfg.image_size))
                    if f"{stage}_fit" not in run.stages_done():
                        hist = fit(policy, buffer, cfg.dagger_fit, seed=cfg.seed + 2 + k, progress=f"{stage} retrain")
                        self._curve(stage, hist)
                        policy.save(run / "policy.pt", extra={"stage": stage})
                        self._done(f"{stage}_fit", hist[-1] if hist else {})
                    else:
                        policy = GraspPolicy.load(run / "policy.pt")
                    done = run.stages_done()

            # 5. RL on top (optional)
            if cfg.algo in ("ppo", "sac") and "rl" not in done:
                from policies.rl import finetune_policy_rl
                stats = finetune_policy_rl(policy, cfg, run)
                policy.control = "direct"  # RL trained the action head
                policy.save(run / "policy.pt", extra={"stage": f"rl-{cfg.algo}"})
                self._done("rl", stats)

            # 6. evaluation
            if "evaluate" not in run.stages_done():
                metrics = evaluate_policy(policy, run.read_json("config.json")["train"], pool, cfg.eval_episodes,
                                          cfg.eval_train_episodes, seed=cfg.seed + 1000)
                self._done("evaluate", True)
                metrics["wall_time_s"] = round(self.elapsed_before + time.time() - self.t0, 1)
                metrics["stages"] = run.stages_done()
                run.write_json("metrics.json", metrics)
        from policies.report import learning_curve_png, rollout_gif
        learning_curve_png(run.path)
        if cfg.gif_episodes:
            rollout_gif(policy, run.read_json("config.json")["train"], run / "rollout.gif", cfg.gif_episodes,
                        seed=cfg.seed + 2000)
        return run.read_json("metrics.json")

    def _collect(self, pool: RolloutPool, root: Path, mode: str, tag: int, episodes: int,
                 policy: GraspPolicy | None = None, beta: float = 0.0) -> None:
        cfg = self.cfg
        chunks = make_chunks(cfg.seed, episodes, cfg.chunk_size, tag=tag, env_kwargs=cfg.env_kwargs("train"),
                             mode=mode, alt_prob=cfg.alt_prob, beta=beta, views=cfg.views_per_layout,
                             views_near=cfg.views_near,
                             policy=policy_bytes(policy) if policy is not None else None)
        meta = {"source": f"sim-{mode}", "env": cfg.env_kwargs("train"), "camera": run_camera(cfg.camera).to_dict()}
        writer, results = collect_episodes(pool, root, meta, chunks, f"{mode} rollouts", self.log)  # resumes
        stage = root.name
        if mode == "views":
            info = {"layouts": writer.num_episodes, "new_layouts": len(results)}
            self._done(stage, info)
            self.log(f"views: {info['layouts']} layouts x {cfg.views_per_layout} views")
            return
        successes = sum(int(e["success"]) for e in writer.episodes if e["success"] != "")
        info = {"episodes": writer.num_episodes, "success_rate": successes / max(writer.num_episodes, 1),
                "new_episodes": len(results)}
        self._curve(stage, [{"step": 0, "rollout_success": info["success_rate"], "episodes": info["episodes"]}])
        self._done(stage, info)
        self.log(f"{stage}: {info['episodes']} episodes, rollout success {info['success_rate']:.1%}")


def run_camera(camera: str | None):
    """The camera a run trains and evaluates with: its ``camera`` setting (a ROS camera_info YAML),
    else the default ``envs.camera.Camera``."""
    from envs.camera import Camera

    return Camera.from_camera_info(camera) if camera else Camera()


# -------------------------------------------------------------------------- evaluation
def evaluate_policy(policy: GraspPolicy, train_config: dict, pool: RolloutPool, heldout_episodes: int,
                    train_episodes: int, seed: int = 1000, domain: str = "sim",
                    proxy_without: tuple[str, ...] = ()) -> dict:
    """Closed-loop success from pixels under full randomization on both object splits, in ``domain``
    (less ``proxy_without``, see ``eval_env_kwargs``)."""
    blob = policy_bytes(policy)
    out: dict[str, Any] = {"eval": {}, "eval_protocol": {
        "domain": domain, "randomization": train_config.get("eval_randomization", "full"), "observation": "pixels",
        "image_size": train_config["image_size"],
        "camera": train_config.get("camera") or "default", "seed": seed}}
    if proxy_without:
        out["eval_protocol"]["proxy_without"] = list(proxy_without)
    for split, n, tag in (("heldout_objects", heldout_episodes, 100), ("train_objects", train_episodes, 101)):
        if n <= 0:
            continue
        kw = eval_env_kwargs(train_config, "heldout" if split == "heldout_objects" else "train", domain, proxy_without)
        chunks = make_chunks(seed, n, train_config.get("chunk_size", 25), tag=tag, env_kwargs=kw, mode="eval",
                             policy=blob)
        results = collect(pool, chunks, progress=f"evaluate {split}")
        ok = sum(r.success for r in results)
        out["eval"][split] = {**success_summary(ok, n), "mean_steps": float(np.mean([r.steps for r in results])),
                              "outcomes": episode_outcomes(chunks, results)}
    return out


def episode_outcomes(chunks: list[Chunk], results: list[Result]) -> dict[str, list]:
    """Per episode, in order: its id, success (0/1), steps, number of objects in the scene and what
    the tray wears (``envs.textures.texture_kind``: "plain", "photo", a procedural kind, ...).

    The id is "<chunk seed>:<index in the chunk>": a chunk seeds its first episode and the rest follow
    from the environment's generator, so that pair names an episode. Evaluations in one domain with
    the same ``seed`` run the same episodes whatever their length, so ids pair them episode by episode
    and catch an episode counted twice (``scripts/compare_evals.py``). In the proxy-real domain the same
    id is another scene than in simulation: that domain draws its own numbers first."""
    ids = [f"{c.seed}:{k}" for c in chunks for k in range(c.episodes)]
    if len(ids) != len(results):
        raise RuntimeError(f"episode_outcomes: {len(results)} results for {len(ids)} episodes")
    return {"episode": ids, "success": [int(r.success) for r in results], "steps": [int(r.steps) for r in results],
            "objects": [len(r.objects.split(",")) if r.objects else 0 for r in results],
            "tray": [r.tray for r in results]}


def evaluate_run(run_dir: str | Path, episodes: int = 200, train_episodes: int | None = None, workers: int = 2,
                 seed: int = 1000, log=print, domain: str = "sim", proxy_without: tuple[str, ...] = ()) -> dict:
    """Re-evaluate a run directory exactly as training evaluated it (``scripts/evaluate.py``), in the
    simulator or (``domain="proxy_real"``) in the proxy-real target domain, less ``proxy_without``."""
    run = RunDir(run_dir)
    config = run.read_json("config.json")
    if config is None:
        raise RunError(f"{run_dir}: no config.json (not a run directory)")
    policy = GraspPolicy.load(run / "policy.pt")
    with RolloutPool(workers) as pool:
        return evaluate_policy(policy, run_settings(config, domain), pool, episodes,
                               episodes if train_episodes is None else train_episodes, seed=seed, domain=domain,
                               proxy_without=proxy_without)


def apply_overrides(cfg: TrainConfig, assignments: list[str]) -> TrainConfig:
    """``KEY=VALUE`` settings (``--set``) on top of a config: VALUE is JSON (else a plain string);
    dotted keys reach into nested settings (``bc.steps=400``, ``encoder.width=24``). Raises
    ValueError naming the key when it is unknown or its value is invalid."""
    import json

    data = cfg.to_dict()
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node, parts = data, key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"--set {key}: {part!r} is not a group of settings")
            node = node[part]
        if parts[-1] not in node:
            raise ValueError(f"--set {key}: unknown setting (known here: {', '.join(sorted(node))})")
        node[parts[-1]] = value
    try:
        return TrainConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--set: {e}") from None


# Settings that decide what the expert/views collection stages record.
COLLECTION_KEYS = ("seed", "camera", "image_size", "randomization", "chunk_size", "expert_episodes",
                   "views_layouts", "views_per_layout", "views_near", "alt_prob")


def reuse_collected(run: RunDir, cfg: TrainConfig, source: str | Path) -> list[str]:
    """Copy the expert demonstrations and views of another run into ``run`` (ablations of the learning
    stages on identical data). Only if ``source`` collected them with the same settings; returns the
    stages copied. Raises RunError naming the first setting that differs."""
    import shutil

    src = RunDir(source)
    saved = (src.read_json("config.json") or {}).get("train")
    if saved is None:
        raise RunError(f"{source}: no config.json (not a run directory)")
    mine = cfg.to_dict()
    for key in COLLECTION_KEYS:
        if saved.get(key) != mine.get(key):
            raise RunError(f"{source}: collected with {key}={saved.get(key)!r}, this run has {mine.get(key)!r}")
    copied = []
    for stage in ("expert", "views"):
        info = src.stages_done().get(stage)
        if info is None or stage in run.stages_done():
            continue
        steps = src / "data" / stage / "steps.csv"
        if cfg.encoder.grasp_choice == "nearest_object" and OBJECT_POINTS[0] not in csv_header(steps):
            raise RunError(f"{steps}: recorded before every object's image point was (no {OBJECT_POINTS[0]} "
                           "column), which the nearest-object grasp choice learns from: collect anew, or add "
                           "--set encoder.grasp_choice=distance to train as that run did")
        shutil.copytree(src / "data" / stage, run / "data" / stage, dirs_exist_ok=True)
        run.mark_done(stage, {**info, "copied_from": str(source)})
        copied.append(stage)
    return copied


def start_run(cfg: TrainConfig, out: str | Path, overwrite: bool = False,
              resume: bool = False) -> tuple[TrainConfig, RunDir]:
    """Create or reopen the run directory and write ``config.json``. On resume the saved config wins
    (a different one would mix two experiments); ``workers`` may change."""
    run = RunDir.create(out, overwrite=overwrite, resume=resume)
    if resume:
        saved = run.read_json("config.json")
        try:
            saved_cfg = TrainConfig.from_dict(saved["train"])
        except (KeyError, TypeError, ValueError) as e:
            raise RunError(f"{run / 'config.json'}: cannot resume, unreadable config ({e})") from None
        saved_cfg.workers = cfg.workers
        return saved_cfg, run
    run.write_json("config.json", {"train": cfg.to_dict(), "environment": environment_info(),
                                   "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    run.discard_old()
    return cfg, run
