"""Fine-tune a sim-trained policy *in simulation* for the real camera's calibration.

A policy learns its camera: the encoder's grasp-point map and the geometric grasp estimate are
trained together through the camera the run was trained with, and the map learns to place its peak
where back-projecting through *that* camera lands on the object (under the training's camera
jitter it compensates for the jitter from what it sees of the tray). Handing a trained policy
another camera for its geometry therefore makes it worse, not better: the default run, with the
proxy-real rig's true pose put into its geometry, grasped 11.5 % in the proxy-real domain against
44.0 % as it was, and 30.0 % against 54.0 % in simulation seen through that rig (README).

So this does what retraining through the real calibration would, at a fraction of its cost:
collect a few hundred expert demonstrations, randomized views and DAgger rollouts in simulation seen
through the new camera (with the training's jitter around it), give the policy the new camera's
geometry, and fine-tune it on them (``SimTuneConfig``: 134 s alone on 2 CPU cores, against 13-16
minutes for training the default from scratch; README). Labels are free in simulation, so it needs
no real label: only the calibration. Measured in the proxy-real domain through the rig's true pose
(README): 52.0, 42.0 and 52.0 % over three seeds against 44.0 % zero-shot, and 38.0, 40.0 and 38.0 % for the same
fine-tuning through the training camera: the camera is worth 10 points over more training, but
over zero-shot the gain is not yet measurable. (Since then the fine-tuning also textures every
surface, some with patches of the real frames, and gives its training images the real frames'
style, ``SimTuneConfig``.)

Today's policies take a new camera's geometry better than that older default did: the untuned
weights with the rig's geometry grasp 72.0 % in the proxy-real domain on the seed-0 and seed-1
default runs, but only 60.8 and 66.2 % in simulation seen through the calibration (73.2-77.8 %
fine-tuned). So the fine-tuning's result is mixed half and half with the untuned policy
(``SimTuneConfig.source_weight``, ``interpolate_policies``), which keeps most of both (README,
"The untuned policy mixed back in").
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from envs.camera import Camera
from envs.config import check_int, check_number, check_probability
from envs.textures import cut_textures, write_textures
from policies.encoders import EncoderSpec
from policies.policy import GraspPolicy

# Buffers computed from the camera (the grasp-point prior's cell positions on the tray, the geometric
# estimate's projection), by state_dict name suffix: they follow the new camera; all else is learned.
CAMERA_BUFFERS = ("prior.cell_xy", "geometry.intrinsics", "geometry.rotation", "geometry.origin")
# Draw k of ``sim_tune_draws`` runs ``sim_tune`` with seed ``cfg.seed + k * DRAW_SEED_STRIDE``: draw 0
# is the single fine-tuning of that seed, and the other draws' episodes are apart from nearby seeds'.
DRAW_SEED_STRIDE = 1000


@dataclass
class SimTuneConfig:
    """Settings of the simulation fine-tuning (saved with the adapted run).

    expert_episodes / views_layouts / dagger_episodes: data collected through the new camera, as in
    ``policies.train.TrainConfig`` (views: ``views_per_layout`` gripper poses per layout); dagger_beta:
    probability that the expert acts in the DAgger rollouts; steps, batch, lr, encoder_lr: the fit
    (gentler than a DAgger retraining round's rates); draws: independent fine-tunings averaged
    (``sim_tune_draws``); workers: rollout processes; seed: of collection and fit (of the first draw).
    """

    expert_episodes: int = 300
    views_layouts: int = 600
    views_per_layout: int = 4
    dagger_episodes: int = 150
    dagger_beta: float = 0.3
    steps: int = 500
    batch: int = 128
    # Gentler than a DAgger retraining round (5e-4 / 3e-4 before): the new camera needs the heads and
    # the geometry residual re-fitted more than new features. On the three default seeds the
    # sim-tuned policy grasped 63.0 / 62.0 / 63.5 % in the proxy-real domain against 59.5 / 56.5 /
    # 60.5 % with the older rates (README, "A gentler fine-tuning in simulation").
    lr: float = 2e-4
    encoder_lr: float = 5e-5
    # Chance that each surface (tray, table, floor) is textured in the collected worlds; training
    # uses 0.5. A real camera sees printed, grained, patterned surfaces, never a plain colour: with
    # every surface textured the three default seeds' sim-tuned policies grasped 58.7 / 61.5 / 65.8 %
    # in the proxy-real domain against 57.5 / 56.7 / 60.5 % (600 episodes each; README, "Every
    # surface textured in the fine-tuning"), and as often as before in simulation.
    texture_probability: float = 1.0
    # Textures cut from the real camera's own images (``envs.textures.cut_textures``; the rows outside
    # the held-out episodes): this many patches, worn by this share of the textured surfaces. A real
    # lab's table and tray are one set of surfaces, and seeing them in simulation teaches the policy
    # they are background: in the proxy-real domain 52.5 % against 46.5 % (seed 1, the same 600
    # episodes) and 46.5 % against 37.3 % (seed 0), in simulation no change (README, "The real
    # surfaces in the fine-tuning"). 0 patches: the pool only. On every textured surface (fraction
    # 1) it was worse: 48.0 % against 52.5 % (seed 1, the same 600 episodes).
    target_textures: int = 64
    target_texture_fraction: float = 0.5
    # The real frames' style (``policies.augment.style_mix``): with this chance a simulated training
    # image takes on a random real frame's amplitude spectrum within ``style_band`` cycles per image
    # (overall colour, brightness, slow gradients), its content kept. On the seed-2 and seed-0
    # defaults' own recordings the sim-tuned policies grasped 65.5 and 56.8 % in the proxy-real
    # domain against 47.8 and 45.2 % without it, the same 400 episodes, and 2-3 points more in
    # simulation (README, "The real camera's style in the fine-tuning"). 0: off.
    style_mix: float = 0.5
    style_band: int = 2
    # Independent draws of the whole fine-tuning (collection, real patches, fit), averaged weight by
    # weight (``sim_tune_draws``). What one draw learns about the real camera depends on its worlds and
    # patches, by up to 10 points in the proxy-real domain, and averaging draws gained a few points
    # there in most of the trials (README, "Three draws averaged"). 1: one draw, about 4 minutes quicker.
    draws: int = 3
    # Share of the run's own (untuned) weights in the result: every learned weight becomes
    # (1 - source_weight) x the draws' average + source_weight x the untuned policy's, the camera's
    # buffers staying the new camera's (``interpolate_policies``; WiSE-FT, Wortsman et al., CVPR
    # 2022). The fine-tuning learns the new camera from a few hundred simulated episodes and loses
    # some of what the run learned from all of its own; the mix keeps part of it. On four averages
    # of three draws (two runs) the proxy-real domain gave 73.2 / 67.8 / 72.2 / 70.8 % at 0.5
    # against 68.0 / 63.5 / 65.8 / 63.0 % without it, the same 400 episodes, and simulation through
    # the calibration -3.8 to +1.3 points (README, "The untuned policy mixed back in"). 1 (the
    # untuned weights with the new geometry) did as well in the proxy-real domain but lost 7 and 17
    # points in simulation. 0: the draws' average alone.
    source_weight: float = 0.5
    workers: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("expert_episodes", "views_layouts", "dagger_episodes", "target_textures", "style_band"):
            check_int(f"sim_tune.{name}", getattr(self, name), 0)
        # No fit would leave only the camera swapped, which costs 7-17 points in simulation (module docstring).
        for name in ("views_per_layout", "steps", "batch", "workers", "draws"):
            check_int(f"sim_tune.{name}", getattr(self, name), 1)
        if self.expert_episodes + self.views_layouts + self.dagger_episodes == 0:
            raise ValueError("sim_tune: nothing to collect (expert_episodes, views_layouts and dagger_episodes are 0)")
        for name in ("dagger_beta", "texture_probability", "target_texture_fraction", "style_mix", "source_weight"):
            check_probability(f"sim_tune.{name}", getattr(self, name))
        for name in ("lr", "encoder_lr"):
            check_number(f"sim_tune.{name}", getattr(self, name), positive=True)

    def to_dict(self) -> dict:
        return asdict(self)


def with_camera(policy: GraspPolicy, camera: Camera) -> GraspPolicy:
    """A copy of ``policy`` whose camera geometry (grasp-point prior, geometric grasp estimate, the
    camera stated at export) is ``camera``'s; every learned weight is kept. On its own this made an
    older default far worse and costs today's 7-17 points in simulation (module docstring):
    ``sim_tune`` then retrains the weights for it. A policy trained
    without the grasp-point prior has no camera in it and is returned as a copy."""
    if policy.spec.camera is None:
        # Trained without the grasp-point prior (grasp_prior=false): nothing in it depends on a camera.
        return copy.deepcopy(policy)
    spec = EncoderSpec.from_dict({**policy.spec.to_dict(), "camera": camera.to_dict()})
    fresh = GraspPolicy(spec, hidden=policy.hidden, control=policy.control, grasp_modes=policy.grasp_head.modes,
                        geometry=policy.geometry is not None, servo=policy.servo)
    state = copy.deepcopy(policy.state_dict())
    for name, value in fresh.state_dict().items():
        if name.endswith(CAMERA_BUFFERS):
            state[name] = value
    fresh.load_state_dict(state)
    fresh.train(policy.training)
    return fresh


def with_texture_probability(randomization: str | dict, probability: float,
                             target_fraction: float | None = None) -> dict:
    """A run's randomization (a preset name or a ``RandomizationConfig.from_dict`` mapping) with every
    surface textured with ``probability`` and, if given, the share ``target_fraction`` of them wearing
    the target camera's textures, as a mapping the environment accepts."""
    data = {"preset": randomization} if isinstance(randomization, str) else copy.deepcopy(randomization)
    visual = {**data.get("visual", {}), "texture_probability": [probability, probability]}
    if target_fraction is not None:
        visual["target_texture_fraction"] = [target_fraction, target_fraction]
    data["visual"] = visual
    return data


def sim_tune(policy: GraspPolicy, train_config: dict, camera_info: str | Path, cfg: SimTuneConfig,
             data_dir: str | Path, log: Callable[[str], None] = print,
             target_images: np.ndarray | None = None) -> tuple[GraspPolicy, dict]:
    """Fine-tune a copy of ``policy`` in simulation seen through the camera in ``camera_info`` (a ROS
    camera_info YAML with its pose in the base frame): collect into ``data_dir`` (episode format),
    switch the policy's geometry to the camera, fit. ``train_config``: the run's saved
    ``TrainConfig`` (its randomization, image size, servo law). ``target_images``: (N, H, W, 3) uint8
    RGB frames of the real camera at the run's image size (no labels needed), from which
    ``cfg.target_textures`` textures are cut for the collected worlds' surfaces (kept in
    ``data_dir``/target_textures) and whose style the fit's images take on (``cfg.style_mix``).
    Returns the tuned policy (eval mode) and what was done (rows, rollout success, textures, style,
    losses, seconds)."""
    from policies.imitation import Buffer, FitConfig, fit
    from policies.rollout import RolloutPool, collect_episodes, make_chunks, policy_bytes
    from policies.train import POLICY_WEIGHTS
    from sim2real.data.episodes import read_dataset

    t0 = time.perf_counter()
    camera = Camera.from_camera_info(camera_info)
    image_size = int(train_config["image_size"])
    info = {"camera_info": str(camera_info), "collected": {}}
    # The run's own training worlds (objects, randomization), seen through the new camera, with the
    # surfaces textured as often as ``cfg.texture_probability`` says, some with the real camera's own.
    env_kwargs = {"image_size": image_size, "objects": "train", "camera": str(camera_info)}
    target_fraction = None
    # The real frames, when any were given: the surfaces' patches and the fit's style come from them.
    real = np.asarray(target_images) if target_images is not None and len(target_images) else None
    if real is not None and cfg.target_textures:
        folder = Path(data_dir) / "target_textures"
        cut = cut_textures(real, cfg.target_textures, np.random.default_rng(cfg.seed + 11))
        write_textures(cut, folder)
        env_kwargs["target_textures"], target_fraction = str(folder), cfg.target_texture_fraction
        info["target_textures"] = {"textures": len(cut), "from_images": len(real), "folder": str(folder)}
        log(f"  sim_tune: {len(cut)} textures cut from {len(real)} real images, worn by "
            f"{cfg.target_texture_fraction:.0%} of the textured surfaces")
    env_kwargs["randomization"] = with_texture_probability(train_config.get("randomization", "full"),
                                                           cfg.texture_probability, target_fraction)
    chunk_size = int(train_config.get("chunk_size", 25))
    tuned = with_camera(policy, camera)
    blob = policy_bytes(tuned)
    buffer = Buffer()
    # Tags apart from training's (1, 2, 10+k), so these episodes are new ones.
    stages = (("expert", 41, cfg.expert_episodes, 0.0), ("views", 42, cfg.views_layouts, 0.0),
              ("dagger", 43, cfg.dagger_episodes, cfg.dagger_beta))
    with RolloutPool(cfg.workers) as pool:
        for mode, tag, count, beta in stages:
            if count == 0:
                continue
            root = Path(data_dir) / mode
            chunks = make_chunks(cfg.seed, count, chunk_size, tag=tag, env_kwargs=env_kwargs, mode=mode,
                                 alt_prob=float(train_config.get("alt_prob", 0.3)), beta=beta,
                                 views=cfg.views_per_layout, views_near=float(train_config.get("views_near", 0.0)),
                                 policy=blob if mode == "dagger" else None)
            meta = {"source": f"sim-{mode}", "env": env_kwargs, "camera": camera.to_dict(),
                    "notes": "sim_tune: collected through the real camera's calibration"}
            _, results = collect_episodes(pool, root, meta, chunks, f"  sim_tune {mode}", log)
            if mode != "views":
                rate = sum(r.success for r in results) / max(len(results), 1)
                info["collected"][mode] = {"episodes": len(results), "success_rate": rate}
                log(f"  sim_tune {mode}: {len(results)} episodes through the new camera, success {rate:.1%}")
            else:
                info["collected"][mode] = {"layouts": len(results)}
            buffer.add_dataset(read_dataset(root, image_size=image_size))
    style = real if real is not None and cfg.style_mix > 0 else None
    if style is not None:
        info["style"] = {"from_images": len(style), "probability": cfg.style_mix, "band": cfg.style_band}
        log(f"  sim_tune: {cfg.style_mix:.0%} of the fit's images take on the style of {len(style)} real images "
            f"(amplitude spectrum within {cfg.style_band} cycles per image)")
    elif cfg.style_mix > 0:
        info["style"] = None
        log("  sim_tune: no real images given, so the fit takes on no real style (style_mix unused)")
    fit_cfg = FitConfig(steps=cfg.steps, batch=cfg.batch, lr=cfg.lr, encoder_lr=cfg.encoder_lr,
                        weights=dict(POLICY_WEIGHTS), style=cfg.style_mix if style is not None else 0.0,
                        style_band=cfg.style_band)
    history = fit(tuned, buffer, fit_cfg, seed=cfg.seed + 7, progress="  sim_tune fit", style_images=style)
    tuned.eval()
    info.update(rows=len(buffer), history=history, seconds=time.perf_counter() - t0,
                config=cfg.to_dict())
    log(f"  sim_tune: fitted on {len(buffer)} simulated rows in {info['seconds']:.0f} s")
    return tuned, info


def average_policies(policies: list[GraspPolicy]) -> GraspPolicy:
    """A copy of the first policy with every learned floating-point weight and buffer (BatchNorm
    statistics included) the mean of the policies' (a uniform "model soup"), summed in float64 so that
    equal values stay exactly equal; integer buffers (BatchNorm's step counts) and the camera's buffers
    (``CAMERA_BUFFERS``) are the first's. The policies must share one architecture and camera, as draws of one
    fine-tuning do: they start from one policy and move little, so their average stays in its basin."""
    if not policies:
        raise ValueError("average_policies: no policies")
    first = policies[0]
    for other in policies[1:]:
        if other.spec.to_dict() != first.spec.to_dict():
            raise ValueError("average_policies: the policies differ in their encoder spec or camera")
    states = [p.state_dict() for p in policies]
    return _with_learned(first, lambda name: sum(s[name].double() for s in states) / len(states))


def interpolate_policies(tuned: GraspPolicy, source: GraspPolicy, weight: float) -> GraspPolicy:
    """A copy of ``tuned`` whose every learned floating-point weight and buffer (BatchNorm statistics
    included) is ``(1 - weight) * tuned + weight * source``, summed in float64 (weight 0 gives ``tuned``
    exactly); integer buffers and the camera's buffers (``CAMERA_BUFFERS``) stay ``tuned``'s, so the
    result sees through ``tuned``'s camera. ``source`` is the policy ``tuned`` was fine-tuned from: the
    same architecture, possibly another camera (WiSE-FT's interpolation, Wortsman et al., CVPR 2022)."""
    check_probability("interpolate_policies: weight", weight)
    mine, theirs = tuned.state_dict(), source.state_dict()
    if mine.keys() != theirs.keys() or any(mine[n].shape != theirs[n].shape for n in mine):
        raise ValueError("interpolate_policies: the two policies differ in their architecture")
    if {k: v for k, v in tuned.spec.to_dict().items() if k != "camera"} != \
            {k: v for k, v in source.spec.to_dict().items() if k != "camera"}:
        raise ValueError("interpolate_policies: the two policies differ in their encoder spec")
    return _with_learned(tuned, lambda name: (1.0 - weight) * mine[name].double() + weight * theirs[name].double())


def _with_learned(template: GraspPolicy, combine: Callable[[str], torch.Tensor]) -> GraspPolicy:
    """A copy of ``template`` (eval mode) whose every learned floating-point weight and buffer is
    ``combine(name)`` (computed in float64, cast back to its dtype); integer buffers (BatchNorm's step
    counts) and the camera's buffers (``CAMERA_BUFFERS``) stay the template's."""
    state = {}
    for name, value in template.state_dict().items():
        if not value.is_floating_point() or name.endswith(CAMERA_BUFFERS):
            state[name] = value.clone()
        else:
            state[name] = combine(name).to(value.dtype)
    out = copy.deepcopy(template)
    out.load_state_dict(state)
    return out.eval()


def sim_tune_draws(policy: GraspPolicy, train_config: dict, camera_info: str | Path, cfg: SimTuneConfig,
                   data_dir: str | Path, score: Callable[[GraspPolicy], dict] | None = None,
                   log: Callable[[str], None] = print,
                   target_images: np.ndarray | None = None) -> tuple[GraspPolicy, dict]:
    """``cfg.draws`` independent runs of ``sim_tune`` (draw k: seed ``cfg.seed + k * DRAW_SEED_STRIDE``,
    into ``data_dir``/draw{k}; its own worlds, real patches and fit), averaged weight by weight
    (``average_policies``). ``score(policy)``, when given, measures each draw and the average on the
    user's labelled real rows (which none of them trains on; ``sim2real.transfer.adapt.evaluate_offline``)
    for the report. Each draw's policy stays in its folder (``policy.pt``, for closed-loop checks); the
    first draw's collected rows and real patches stay too (rehearsal, the forgetting measure), the
    other draws' are deleted once they are fitted (about 160 MB each at the defaults). With one draw this
    is ``sim_tune`` into ``data_dir`` itself, as before there were draws. Then, with
    ``cfg.source_weight`` > 0, the untuned ``policy`` is mixed back in (``interpolate_policies``), and
    ``score`` measures the result. Returns the policy and ``sim_tune``'s info of the first draw (its
    rows, collection, losses) with, for several draws, ``draws`` (each draw's seed, seconds and
    scores), ``average`` (the average's scores, or None) and ``seconds`` for all draws, and with the
    mix ``source_weight``, ``unmixed`` and ``mixed`` (the scores before and after it, or None)."""
    if cfg.draws == 1:
        tuned, info = sim_tune(policy, train_config, camera_info, cfg, data_dir, log, target_images)
    else:
        tuned, info = _average_draws(policy, train_config, camera_info, cfg, data_dir, score, log, target_images)
    if cfg.source_weight:
        unmixed = info.get("average") if cfg.draws > 1 else (score(tuned) if score else None)
        tuned = interpolate_policies(tuned, policy, cfg.source_weight)
        info.update(source_weight=cfg.source_weight, unmixed=unmixed, mixed=score(tuned) if score else None)
        said = (f": real rows' grasp error {info['mixed']['xy_err_cm_mean']:.2f} cm"
                if info["mixed"] and info["mixed"].get("rows") else "")
        log(f"  sim_tune: the run's untuned weights mixed back in at {cfg.source_weight:g}{said}")
    return tuned, info


def _average_draws(policy: GraspPolicy, train_config: dict, camera_info: str | Path, cfg: SimTuneConfig,
                   data_dir: str | Path, score: Callable[[GraspPolicy], dict] | None,
                   log: Callable[[str], None], target_images: np.ndarray | None) -> tuple[GraspPolicy, dict]:
    """The several-draws part of ``sim_tune_draws``: the draws, their folders and their average."""
    data_dir = Path(data_dir)
    t0 = time.perf_counter()
    tuned_draws, draws, first = [], [], None
    for k in range(cfg.draws):
        seed = cfg.seed + k * DRAW_SEED_STRIDE
        log(f"  sim_tune draw {k + 1}/{cfg.draws} (seed {seed})")
        folder = data_dir / f"draw{k}"
        tuned, info = sim_tune(policy, train_config, camera_info, replace(cfg, seed=seed, draws=1), folder, log,
                               target_images)
        tuned.save(folder / "policy.pt", extra={"sim_tune_draw": k, "seed": seed})
        draws.append({"draw": k, "seed": seed, "seconds": info["seconds"], **(score(tuned) if score else {})})
        tuned_draws.append(tuned)
        if score:
            log(f"  sim_tune draw {k + 1}/{cfg.draws}: real rows' grasp error {draws[-1]['xy_err_cm_mean']:.2f} cm "
                f"(mean over {draws[-1]['rows']} rows)")
        if k == 0:
            first = info
        else:
            # Only what sim_tune itself wrote there: the draw's policy stays.
            for name in ("expert", "views", "dagger", "target_textures"):
                if (folder / name).is_dir():
                    shutil.rmtree(folder / name)
    soup = average_policies(tuned_draws)
    first.update(draws=draws, average=score(soup) if score else None, seconds=time.perf_counter() - t0,
                 config=cfg.to_dict())
    said = (f"; real rows' grasp error {first['average']['xy_err_cm_mean']:.2f} cm against "
            + ", ".join(f"{d['xy_err_cm_mean']:.2f}" for d in draws) + " for the draws" if score else "")
    log(f"  sim_tune: the {cfg.draws} draws averaged weight by weight{said} ({first['seconds']:.0f} s in all)")
    return soup, first
