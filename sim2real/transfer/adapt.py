"""Adapt a sim-trained ``GraspPolicy`` to real camera data and measure what each strategy gives.

What the real data teaches. A row is *labelled* when it has proprio, an executed grasp pose
(``grasp_*``) and did not end in a failed grasp: the grasp head (what the servo policy acts on) then
learns the offset from the hand to where the hand really grasped, exactly the quantity it was trained
on in simulation (``policies.policy.grasp_targets``). Rows with an action label (``e_*``:
teleoperation) also train the action head; rows with a known outcome train the outcome head. Every
image, labelled or not, counts for the unsupervised parts (AdaBN statistics, DANN, CORAL).

Protocol. Labelled episodes are split (by episode, so no scene is on both sides) into a training and a
held-out validation split. Every strategy (``sim2real.transfer.strategies``) trains the same number of
steps on the same rows; validation reports the grasp-head error on the held-out split. The data-
efficiency curve re-runs the chosen strategy and from-scratch on the first 10, 25, ... training rows
(whole episodes in a fixed random order). Forgetting is the grasp-head error on simulated rows before
and after adaptation.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from envs.config import check_int, check_number, check_probability
from policies.encoders import images_to_tensor
from policies.imitation import (
    GRASP_HUBER_BETA,
    FitConfig,
    channels_last,
    keypoint_pixels,
    losses,
    make_batch,
    nhwc,
    object_pixels,
)
from policies.policy import GRASP_SCALE, GraspPolicy, grasp_targets
from sim2real.data.episodes import Dataset, DatasetError
from sim2real.stats import paired_gain_interval, paired_gain_pvalue
from sim2real.transfer.strategies import (
    STRATEGIES,
    DomainDiscriminator,
    Strategy,
    adabn,
    coral_loss,
    l2sp_penalty,
    set_trainable,
)


@dataclass
class AdaptConfig:
    """Settings of one adaptation run (saved in the adapted run's config.json).

    strategy: a name in ``STRATEGIES`` or "auto" (the lowest validation grasp loss, when its gain over
        zero-shot is beyond the split's noise: ``choose``);
    compare: strategies trained for the comparison (all by default); steps, batch, lr: per strategy
    (scratch trains ``Strategy.steps_scale`` = 2x the steps; lr for the heads; the encoder's is lr x
    the strategy's scale). 150 steps: on a recording's 88 labelled rows, every trained strategy's
    held-out grasp loss was lower than at 300 (which overfits them), its error on simulated rows
    (forgetting) within 0.1 cm of it either way, in half the time (README); val_fraction: labelled episodes
    held out; max_samples: labelled rows used at most (train + validation), None = all; budgets:
    training-row counts of the data-efficiency curve (those below the available rows are run, plus
    "all"); weights: loss weights (``policies.imitation``); uda_weight: DANN / CORAL loss weight;
    sim_replay: weight of the sim grasp loss on simulated rows trained alongside the real ones (rehearsal
    against forgetting and overfitting a few real rows; 0 = off; never for scratch, which is real-only);
    gripper_rows: also train on rows without a grasp label (outside the held-out episodes) through the
    gripper keypoint, which the proprio and the camera give for every row;
    sim_rows: simulated rows loaded for DANN / CORAL and the forgetting measure; shift, jitter:
    augmentation (pixels, strength); sim_tune: when a real camera calibration is given that
    disagrees with the run's camera, first fine-tune the policy in simulation seen through it
    (``sim2real.transfer.simtune``, no real labels needed); every strategy but scratch starts there;
    sim_tune_draws: independent draws of that fine-tuning, averaged weight by weight
    (``simtune.sim_tune_draws``; about 2 min each on 2 cores); sim_tune_source_weight: share of the
    run's untuned weights mixed back into that fine-tuning's result (``SimTuneConfig.source_weight``);
    workers: processes training strategies side by side (one torch thread each: on our 2-core machine
    a second thread speeds one fit up 1.13x, a second process nearly 2x). The results do not depend
    on it: every fit seeds its own random numbers.
    """

    strategy: str = "auto"
    compare: tuple[str, ...] = tuple(STRATEGIES)
    steps: int = 150
    batch: int = 64
    lr: float = 3e-4
    val_fraction: float = 0.25
    max_samples: int | None = None
    budgets: tuple[int, ...] = (10, 25, 50, 100)
    weights: dict[str, float] = field(default_factory=lambda: {
        "grasp": 1.0, "action": 0.5, "outcome": 0.1, "keypoints": 0.25})
    uda_weight: float = 0.3
    sim_replay: float = 0.5
    gripper_rows: bool = True
    sim_rows: int = 1500
    shift: int = 4
    jitter: float = 0.2
    sim_tune: bool = True
    sim_tune_draws: int = 3
    sim_tune_source_weight: float = 0.5
    seed: int = 0
    workers: int = 2

    def __post_init__(self) -> None:
        self.compare = tuple(self.compare)
        self.budgets = tuple(int(b) for b in self.budgets)
        for name in (*self.compare, *([] if self.strategy == "auto" else [self.strategy])):
            if name not in STRATEGIES:
                raise ValueError(f"strategy: unknown {name!r}; choose auto or one of {', '.join(STRATEGIES)}")
        for name in ("steps", "batch", "sim_rows", "workers", "sim_tune_draws"):
            check_int(name, getattr(self, name), 1)
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction: must be in (0, 1), got {self.val_fraction}")
        if self.max_samples is not None and self.max_samples < 2:
            raise ValueError(f"max_samples: need at least 2 labelled rows, got {self.max_samples}")
        check_number("lr", self.lr, positive=True)
        check_probability("sim_tune_source_weight", self.sim_tune_source_weight)

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- data
@dataclass
class RealData:
    """Real rows as training arrays (``to_arrays``) plus the split: ``train`` / ``val`` index labelled
    rows, ``gripper_only`` unlabelled rows outside the held-out episodes, ``all_rows`` every row
    (images for the unsupervised parts)."""

    arrays: dict[str, np.ndarray]
    episode: np.ndarray
    train: np.ndarray
    val: np.ndarray
    labelled: np.ndarray
    gripper_only: np.ndarray | None = None  # rows outside val episodes with proprio but no grasp label

    @property
    def all_rows(self) -> np.ndarray:
        return np.arange(len(self.episode))

    @property
    def outside_val(self) -> np.ndarray:
        """Every row (labelled or not) outside the held-out episodes: what may be learned from."""
        return np.flatnonzero(~np.isin(self.episode, self.episode[self.val]))


def to_arrays(ds: Dataset, image_size: int, camera: dict | None) -> dict[str, np.ndarray]:
    """A ``Dataset`` as training arrays. A failed grasp's pose is not a place to grasp: its rows keep
    the image but lose the grasp label."""
    grasp = ds.grasp.copy()
    grasp[ds.success == 0] = np.nan
    images = ds.images
    if images.shape[1:3] != (image_size, image_size):
        import cv2

        images = np.stack([cv2.resize(im, (image_size, image_size), interpolation=cv2.INTER_AREA) for im in images])
    expert = ds.expert_action
    return {"images": images, "proprio": ds.proprio, "expert_action": expert,
            "object": np.full((len(ds), 4), np.nan, np.float32), "grasp": grasp, "success": ds.success,
            "has_alt": np.zeros(len(ds), bool), "keypoints": keypoint_pixels(camera, image_size, grasp, ds.proprio),
            "object_pixels": object_pixels(ds.object_points, images)}


def split_real(ds: Dataset, image_size: int, camera: dict | None, val_fraction: float, seed: int,
               max_samples: int | None = None, unlabelled_ok: bool = False) -> RealData:
    """Labelled rows split by episode into train / val (at least one episode each); ``max_samples``
    keeps the labelled rows of whole episodes, in a seeded random order, up to that many rows.
    ``unlabelled_ok``: a dataset without any label gives empty splits (unsupervised adaptation only)
    instead of an error; labels in a single episode are still an error (no honest validation)."""
    arrays = to_arrays(ds, image_size, camera)
    labelled = np.isfinite(arrays["grasp"]).all(axis=1) & np.isfinite(arrays["proprio"]).all(axis=1)
    episodes = np.unique(ds.episode[labelled])
    where = str(ds.root)
    if len(episodes) == 0 and unlabelled_ok:
        empty = np.zeros(0, np.int64)
        return RealData(arrays, ds.episode.copy(), empty, empty, labelled)
    if len(episodes) < 2:
        raise DatasetError(f"{where}: need labelled rows (proprio + grasp_* pose, not a failed grasp) in at least "
                           f"2 episodes for a train/validation split, found {len(episodes)} episode(s) with "
                           f"{int(labelled.sum())} labelled row(s)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(episodes)
    if max_samples is not None:
        kept, total = [], 0
        for e in order:
            if total >= max_samples:
                break
            kept.append(e)
            total += int((labelled & (ds.episode == e)).sum())
        order = np.array(kept)
        if len(order) < 2:
            raise DatasetError(f"{where}: max_samples={max_samples} leaves fewer than 2 labelled episodes")
    n_val = min(len(order) - 1, max(1, int(round(val_fraction * len(order)))))
    val_eps, train_eps = order[:n_val], order[n_val:]
    train = np.concatenate([np.flatnonzero(labelled & (ds.episode == e)) for e in train_eps])
    val = np.concatenate([np.flatnonzero(labelled & (ds.episode == e)) for e in val_eps])
    if max_samples is not None and len(train) + len(val) > max_samples:
        train = train[: max(1, max_samples - len(val))]
    # Rows without a grasp label still show the hand where proprio says it is: the gripper keypoint.
    has_proprio = np.isfinite(arrays["proprio"]).all(axis=1)
    gripper_only = np.flatnonzero(has_proprio & ~labelled & ~np.isin(ds.episode, val_eps))
    return RealData(arrays, ds.episode.copy(), train, val, labelled, gripper_only)


def sim_arrays(run_dir: str | Path, rows: int, image_size: int, camera: dict | None, seed: int) -> dict | None:
    """Up to ``rows`` labelled simulated rows from the run's last collected dataset (DAgger rounds are
    the student's own states, the best match to what the policy sees), or None if the run kept no data.
    An adapted run that was fine-tuned in simulation (``data/sim_tune``) offers those rows first: they
    were seen through the camera its policy now uses."""
    from sim2real.data.episodes import read_dataset

    data = Path(run_dir) / "data"
    candidates = sorted(data.glob("dagger_*"), key=lambda p: int(p.name.split("_")[-1])) if data.is_dir() else []
    # (With several draws of the fine-tuning, only the first draw's folder keeps its rows.)
    tuned = [data / "sim_tune"] + sorted((data / "sim_tune").glob("draw*"))
    candidates = [t / mode for mode in ("dagger", "expert") for t in tuned] + candidates[::-1] + [data / "expert"]
    candidates = [c for c in candidates if c.is_dir()]
    for path in candidates:
        try:
            ds = read_dataset(path, image_size=image_size, load_alt=False)
        except DatasetError:
            continue
        idx = np.random.default_rng(seed).permutation(len(ds))[:rows]
        arrays = to_arrays(ds, image_size, camera)
        arrays = {k: v[np.sort(idx)] for k, v in arrays.items()}
        keep = np.isfinite(arrays["grasp"]).all(axis=1)
        if keep.any():
            return {k: v[keep] for k, v in arrays.items()}
    return None


# ------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_offline(policy: GraspPolicy, arrays: dict[str, np.ndarray], idx: np.ndarray,
                     batch: int = 256, per_row: bool = False) -> dict[str, float]:
    """Grasp-head quality on rows ``idx``: Huber loss (the training objective), median and mean
    horizontal error of the hand-to-grasp offset (cm) and median yaw error (deg, modulo a half turn).
    ``per_row`` adds each row's loss (``row_loss``, in the order of ``idx``): what ``choose`` tests and resamples."""
    policy.eval()
    preds, targets = [], []
    for i in range(0, len(idx), batch):
        j = idx[i:i + batch]
        proprio = torch.as_tensor(arrays["proprio"][j], dtype=torch.float32)
        preds.append(policy.grasp_estimate(images_to_tensor(arrays["images"][j]), proprio))
        targets.append(grasp_targets(torch.as_tensor(arrays["grasp"][j], dtype=torch.float32), proprio))
    if not preds:
        return {"rows": 0}
    pred, target = torch.cat(preds), torch.cat(targets)
    rows = F.smooth_l1_loss(pred, target, beta=GRASP_HUBER_BETA, reduction="none").mean(dim=1)
    xy = torch.linalg.vector_norm(pred[:, :2] - target[:, :2], dim=1) * GRASP_SCALE * 100
    yaw_p, yaw_t = torch.atan2(pred[:, 4], pred[:, 3]) / 2, torch.atan2(target[:, 4], target[:, 3]) / 2
    dyaw = torch.remainder(yaw_p - yaw_t + math.pi / 2, math.pi) - math.pi / 2
    out = {"rows": int(len(idx)), "grasp_loss": rows.mean().item(), "xy_err_cm": float(xy.median()),
           "xy_err_cm_mean": float(xy.mean()), "yaw_err_deg": float(torch.rad2deg(dyaw.abs()).median())}
    if per_row:
        out["row_loss"] = [float(v) for v in rows]
    return out


# --------------------------------------------------------------------------- training
def train_strategy(sim_policy: GraspPolicy, strategy: Strategy, real: RealData, train_idx: np.ndarray,
                   cfg: AdaptConfig, source: dict | None = None,
                   progress: str | None = None) -> tuple[GraspPolicy, list]:
    """A copy of ``sim_policy`` adapted with ``strategy`` on labelled real rows ``train_idx``
    (images of every real row for the unsupervised parts, simulated ``source`` rows for DANN/CORAL).
    Returns the adapted policy (eval mode) and the logged losses."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    if strategy.scratch:
        policy = GraspPolicy(copy.deepcopy(sim_policy.spec), hidden=sim_policy.hidden, control=sim_policy.control,
                             grasp_modes=sim_policy.grasp_head.modes, geometry=sim_policy.geometry is not None,
                             servo=sim_policy.servo)
    else:
        policy = copy.deepcopy(sim_policy)
    if strategy.adabn:
        adabn(policy, images_to_tensor(real.arrays["images"]))
    if not strategy.trains or (strategy.adabn and not strategy.uda and not len(train_idx)):
        policy.eval()  # zero-shot; or AdaBN alone when there are no labels to retrain the heads with
        return policy, []
    if strategy.uda and source is None:
        raise ValueError(f"strategy {strategy.name}: needs simulated rows (the run's data/ folder)")
    if not len(train_idx) and not strategy.uda:
        raise ValueError(f"strategy {strategy.name}: needs labelled real rows (only adabn, dann and coral "
                         f"adapt from unlabelled images)")
    steps = strategy.steps(cfg.steps)
    fit_cfg = FitConfig(steps=steps, batch=cfg.batch, shift=cfg.shift, jitter=cfg.jitter, weights=cfg.weights)
    enc_ids = {id(p) for p in policy.encoder.parameters()}
    heads = [p for p in policy.parameters() if id(p) not in enc_ids]
    groups = [{"params": heads, "lr": cfg.lr},
              {"params": list(policy.encoder.parameters()), "lr": cfg.lr * strategy.encoder_lr_scale}]
    disc = None
    if strategy.uda == "dann":
        disc = DomainDiscriminator(policy.encoder.features_dim)
        groups.append({"params": list(disc.parameters()), "lr": cfg.lr})
    opt = torch.optim.AdamW(groups, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    reference = {n: p.detach().clone() for n, p in policy.encoder.named_parameters()} if strategy.l2sp else {}
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    all_rows = real.all_rows
    rows = train_idx
    if cfg.gripper_rows and real.gripper_only is not None and len(train_idx):
        rows = np.union1d(train_idx, real.gripper_only)
    with channels_last(policy):  # faster convolutions on a CPU; NCHW again on exit
        for step in tqdm(range(steps), desc=progress, disable=progress is None, leave=False, unit="step"):
            frac = step / steps
            set_trainable(policy, strategy, frac)
            if len(train_idx):
                batch = nhwc(make_batch(real.arrays, rng.choice(rows, cfg.batch), fit_cfg, gen))
                total = losses(policy, batch, cfg.weights)["total"]
            else:  # unlabelled real data: only the unsupervised objectives (and the sim task) train
                total = torch.zeros(())
            row = {"step": step + 1, "task": total.item()}
            if strategy.l2sp:
                pen = l2sp_penalty(policy, reference)
                total = total + 0.5 * strategy.l2sp * pen
                row["l2sp"] = pen.item()
            replay = source is not None and not strategy.scratch and (strategy.uda or cfg.sim_replay > 0)
            if replay:
                sim_b = nhwc(make_batch(source, rng.integers(0, len(source["images"]), cfg.batch), fit_cfg, gen))
                sim_out = losses(policy, sim_b, {"grasp": 1.0})
                total = total + max(cfg.sim_replay, 0.5 if strategy.uda else 0.0) * sim_out["total"]
                row["sim_task"] = sim_out["total"].item()
            if strategy.uda:
                f_sim = policy.encoder(sim_b["images"], sim_b["proprio"])
                unl = nhwc(make_batch(real.arrays, rng.choice(all_rows, cfg.batch), fit_cfg, gen))
                f_real = policy.encoder(unl["images"], unl["proprio"])
                if strategy.uda == "dann":
                    lam = 2.0 / (1.0 + math.exp(-10 * frac)) - 1.0  # Ganin & Lempitsky's ramp
                    logits = disc(torch.cat([f_sim, f_real]), lam)
                    labels = torch.cat([torch.zeros(len(f_sim)), torch.ones(len(f_real))])
                    align = F.binary_cross_entropy_with_logits(logits, labels)
                else:
                    align = coral_loss(f_sim, f_real)
                total = total + cfg.uda_weight * align
                row["align"] = align.item()
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 5.0)
            opt.step()
            sched.step()
            if (step + 1) % max(1, steps // 20) == 0 or step + 1 == steps:
                history.append({k: round(v, 5) for k, v in row.items()})
    policy.eval()
    return policy, history


UNSUPERVISED = ("zero_shot", "adabn", "dann", "coral")
# One-sided level of ``choose``'s test: the same as a two-sided 95 % interval excluding zero.
CHOICE_LEVEL = 0.025
# The fewest held-out episodes whose rarest sign pattern (2^-G) is below that level: 6.
CHOICE_MIN_EPISODES = math.ceil(-math.log2(CHOICE_LEVEL) + 1e-9)
UNSUPERVISED_DEFAULT = "adabn"  # no labels to choose with: the one that cannot hurt the task heads


def choose(results: dict[str, dict], groups: np.ndarray | None = None, seed: int = 0) -> tuple[str, str]:
    """``--strategy auto``: the strategy with the lowest validation grasp loss, and why.

    With ``groups`` (the held-out episode of each validation row) and per-row losses, a strategy
    replaces zero-shot only when its gain is beyond the split's noise: a sign-flip test over held-out
    episodes must put it below ``CHOICE_LEVEL`` (``sim2real.stats.paired_gain_pvalue``); the
    bootstrap interval of the gain, resampling episodes, is given beside it.
    Why: a few held-out episodes decide the offline ranking, and it does not predict the closed
    loop. On the seed-0 default in the proxy-real domain the split preferred AdaBN (loss 0.245
    against 0.280, interval -0.047 to 0.077 over 4 episodes), which grasped 39.5 % against
    59.5 % for zero-shot (there: the policy fine-tuned in simulation through the real calibration;
    README, "Results in the proxy-real domain"). The interval alone was not enough: over 4 episodes
    it excluded zero for l2sp twice (seed 1, ``--seed 1``), which then grasped 54.0 % and 48.0 %,
    the second against 64.2 % for the policy it replaced (README, "Auto on four held-out
    episodes"); 4 episodes cannot reach p < 2^-4, so they keep zero-shot.
    Without labelled held-out rows, ``UNSUPERVISED_DEFAULT``."""
    scored = [n for n in results if results[n]["val"].get("rows")]
    if not scored:
        chosen = UNSUPERVISED_DEFAULT if UNSUPERVISED_DEFAULT in results else next(iter(results))
        return chosen, "no labelled held-out rows to compare on"
    # A non-finite loss (a diverged fit) ranks last, never first.
    best = min(scored, key=lambda name: np.nan_to_num(results[name]["val"]["grasp_loss"], nan=np.inf))
    base = results.get("zero_shot", {}).get("val", {})
    if best == "zero_shot" or groups is None or "row_loss" not in base or "row_loss" not in results[best]["val"]:
        return best, "lowest held-out grasp loss"
    groups = np.asarray(groups)
    n_eps = len(np.unique(groups))
    lo, hi = paired_gain_interval(base["row_loss"], results[best]["val"]["row_loss"], groups, seed)
    p = paired_gain_pvalue(base["row_loss"], results[best]["val"]["row_loss"], groups, seed=seed)
    gain = base["grasp_loss"] - results[best]["val"]["grasp_loss"]
    span = (f"95 % interval over {n_eps} held-out episodes {lo:.4f} to {hi:.4f}, "
            f"sign-flip test p = {p:.3g}")
    if p < CHOICE_LEVEL:  # False for NaN
        return best, f"lowest held-out grasp loss, {gain:.4f} below zero-shot's ({span})"
    if n_eps < CHOICE_MIN_EPISODES:
        return "zero_shot", (f"{best} had the lowest held-out grasp loss, {gain:.4f} below zero-shot's, but "
                             f"{n_eps} held-out episode{'s' if n_eps > 1 else ''} cannot show a gain at "
                             f"p < {CHOICE_LEVEL} ({span}; "
                             f"it takes at least {CHOICE_MIN_EPISODES}: record more labelled episodes): "
                             "zero-shot kept")
    return "zero_shot", (f"{best} had the lowest held-out grasp loss, {gain:.4f} below zero-shot's, but within "
                         f"the split's noise ({span}): zero-shot kept")


class _Job(NamedTuple):
    """One fit: strategy ``name`` on the training rows ``rows``; ``budget``: the data-efficiency
    budget it stands for (None: the comparison on every training row, also scored on sim rows)."""

    name: str
    rows: np.ndarray
    budget: int | None = None

    @property
    def label(self) -> str:
        return self.name if self.budget is None else f"{self.name} on {self.budget} rows"


def _train_and_score(sim_policy: GraspPolicy, job: _Job, real: RealData, cfg: AdaptConfig, source: dict | None,
                     progress: str | None = None) -> tuple[GraspPolicy, dict]:
    """One fit, scored on the held-out rows (and, in the comparison, on the simulated ones:
    forgetting); the policy and its result row."""
    strategy = STRATEGIES[job.name]
    t0 = time.perf_counter()
    policy, history = train_strategy(sim_policy, strategy, real, job.rows, cfg, source, progress=progress)
    # Per-row losses only where ``choose`` tests them: the comparison, not the budget curve.
    res = {"val": evaluate_offline(policy, real.arrays, real.val, per_row=job.budget is None) if len(real.val)
           else {"rows": 0},
           "seconds": time.perf_counter() - t0,
           "train_rows": int(len(job.rows)), "history": history, "strategy": strategy.to_dict()}
    if job.budget is None and source is not None:
        res["sim"] = evaluate_offline(policy, source, np.arange(len(source["images"])))
    return policy, res


# What every job of a worker process shares (the sim policy, the real and simulated rows, the
# settings), set once per process by ``_init_worker``: sent with each job instead, it was pickled again
# for every fit (about 25 MB each, 13 fits per default run).
_WORKER: dict[str, Any] = {}


def _init_worker(blob: dict, real: RealData, cfg: AdaptConfig, source: dict | None) -> None:
    torch.set_num_threads(1)
    _WORKER.update(policy=GraspPolicy.from_checkpoint(blob), real=real, cfg=cfg, source=source)


def _job(job: _Job) -> tuple[dict, dict]:
    """``_train_and_score`` in a worker process (``_init_worker`` gave it the shared inputs); the
    adapted policy comes back as a checkpoint."""
    w = _WORKER
    policy, res = _train_and_score(w["policy"], job, w["real"], w["cfg"], w["source"])
    return policy.checkpoint(), res


def _relative_cost(strategy: Strategy) -> float:
    """Rough compute of one fit, for ordering jobs: forward-backward passes per step (a real batch,
    the sim rehearsal batch unless scratch, the unlabelled batch of DANN/CORAL), doubled when the
    encoder trains, times the strategy's steps."""
    passes = 1 + (not strategy.scratch) + (strategy.uda is not None)
    return strategy.steps_scale * passes * (2 if strategy.encoder != "frozen" else 1)


def _run_jobs(sim_policy: GraspPolicy, jobs: list[_Job], real: RealData, cfg: AdaptConfig, source: dict | None,
              desc: str, done: Callable[[_Job, GraspPolicy, dict], None]) -> None:
    """Each job trained and scored, in ``cfg.workers`` spawned processes when there is more than one
    job (else here, with a progress bar per fit); ``done(job, policy, result)`` as each finishes."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    workers = min(cfg.workers, len(jobs))
    if workers <= 1:
        for job in jobs:
            done(job, *_train_and_score(sim_policy, job, real, cfg, source, progress=f"  {job.label}"))
        return
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(sim_policy.checkpoint(), real, cfg, source)) as pool:
        # Longest first: a long fit started last leaves the other process idle at the end.
        ordered = sorted(jobs, key=lambda j: -_relative_cost(STRATEGIES[j.name]))
        futures = {pool.submit(_job, job): job for job in ordered}
        with tqdm(total=len(jobs), desc=f"  {desc} ({workers} processes)", leave=False, unit="fit") as bar:
            for future in as_completed(futures):
                state, res = future.result()
                with tqdm.external_write_mode():  # log lines above the bar, not through it
                    done(futures[future], GraspPolicy.from_checkpoint(state), res)
                bar.update()


def _budgets(cfg: AdaptConfig, real: RealData) -> list[int]:
    """The data-efficiency curve's training-row counts: ``cfg.budgets`` below the available rows, and all."""
    n = len(real.train)
    return sorted({b for b in cfg.budgets if b < n} | {n})


def compare_strategies(sim_policy: GraspPolicy, real: RealData, cfg: AdaptConfig, source: dict | None,
                       log: Callable[[str], None] = print,
                       budgets_of: tuple[str, ...] = ()) -> tuple[dict[str, dict], dict[str, GraspPolicy]]:
    """Train every strategy in ``cfg.compare`` on the same rows (side by side in ``cfg.workers``
    processes); per strategy the validation metrics, the sim metrics (forgetting), wall time and loss
    history, in ``cfg.compare``'s order. DANN/CORAL are skipped (with a note) when the run kept no
    simulated data. ``budgets_of``: strategies whose data-efficiency fits (``data_efficiency``) run in
    the same processes, known before the choice (scratch's): their held-out scores land in the
    result's "budgets" ({rows: val}), where ``data_efficiency`` finds them."""
    jobs = []
    for name in cfg.compare:
        if STRATEGIES[name].uda and source is None:
            log(f"  {name}: skipped (the sim run kept no data/ folder to align with)")
            continue
        jobs.append(_Job(name, real.train))
    compared = [job.name for job in jobs]
    n = len(real.train)
    jobs += [_Job(name, real.train[:b], b) for name in budgets_of if name in compared and STRATEGIES[name].trains
             for b in _budgets(cfg, real) if b < n]
    results: dict[str, dict] = {}
    policies: dict[str, GraspPolicy] = {}
    budget_scores: dict[str, dict[int, dict]] = {}

    def done(job: _Job, policy: GraspPolicy, res: dict) -> None:
        if job.budget is not None:
            budget_scores.setdefault(job.name, {})[job.budget] = res["val"]
            return
        results[job.name], policies[job.name] = res, policy
        v = res["val"]
        if v["rows"]:
            log(f"  {job.name:<10} val grasp error {v['xy_err_cm']:.2f} cm (median), yaw {v['yaw_err_deg']:.1f} deg, "
                f"loss {v['grasp_loss']:.4f}  [{res['seconds']:.0f} s]")
        else:
            log(f"  {job.name:<10} trained (no labelled held-out rows to score it)  [{res['seconds']:.0f} s]")

    _run_jobs(sim_policy, jobs, real, cfg, source, "strategies", done)
    for name, scores in budget_scores.items():
        results[name]["budgets"] = scores
    return {n: results[n] for n in compared}, {n: policies[n] for n in compared}


def data_efficiency(sim_policy: GraspPolicy, real: RealData, cfg: AdaptConfig, names: list[str],
                    source: dict | None, log: Callable[[str], None] = print,
                    known: dict[str, dict] | None = None) -> dict[str, Any]:
    """Validation error of each strategy in ``names`` trained on the first b training rows (whole
    episodes in the split's random order), for every budget b in ``cfg.budgets`` below the available
    rows, plus all rows. ``known``: ``compare_strategies`` results with the same config, whose
    all-rows runs are the same training (same seed and rows) and are not repeated, nor are the
    budgets it already ran (``budgets_of``); an untrained strategy is the same policy at every budget."""
    n = len(real.train)
    budgets = _budgets(cfg, real)
    out: dict[str, Any] = {"budgets": budgets, "xy_err_cm": {}, "grasp_loss": {}}
    scores: dict[tuple[str, int], dict] = {}
    jobs = []
    for name in names:
        prior = (known or {}).get(name)
        for b in budgets:
            if prior is not None and (b == n or not STRATEGIES[name].trains):
                scores[name, b] = prior["val"]
            elif prior is not None and b in prior.get("budgets", {}):
                scores[name, b] = prior["budgets"][b]
            else:
                jobs.append(_Job(name, real.train[:b], b))

    def done(job: _Job, policy: GraspPolicy, res: dict) -> None:
        scores[job.name, job.budget] = res["val"]

    _run_jobs(sim_policy, jobs, real, cfg, source, "data efficiency", done)
    for name in names:
        errs = [scores[name, b]["xy_err_cm"] for b in budgets]
        out["xy_err_cm"][name] = errs
        out["grasp_loss"][name] = [scores[name, b]["grasp_loss"] for b in budgets]
        log(f"  {name:<10} " + ", ".join(f"{b}: {e:.2f} cm" for b, e in zip(budgets, errs, strict=True)))
    return out


def negative_transfer(results: dict[str, dict], chosen: str) -> list[str]:
    """Warnings when the chosen strategy is worse than from-scratch or than zero-shot on validation.
    The from-scratch baseline itself transfers nothing, so it cannot transfer negatively: when it is
    the choice and the sim policy unchanged does better, the warning says that instead."""
    warnings = []
    if not results[chosen]["val"].get("rows"):
        return warnings
    mine = results[chosen]["val"]["grasp_loss"]
    for ref in ("scratch", "zero_shot"):
        if ref in results and ref != chosen and mine > results[ref]["val"]["grasp_loss"]:
            losses = f"(grasp loss {mine:.4f} > {results[ref]['val']['grasp_loss']:.4f})"
            if chosen == "scratch":
                warnings.append(f"WORSE THAN ZERO-SHOT: scratch (trained on the real rows alone) is worse than "
                                f"the sim policy unchanged on the held-out real split {losses}; the simulation "
                                "pretraining is worth keeping")
            else:
                warnings.append(f"NEGATIVE TRANSFER: {chosen} is worse than {ref} on the held-out real split {losses}")
    return warnings
