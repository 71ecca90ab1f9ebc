"""The whole adaptation job behind ``scripts/adapt_real.py``: load and validate the real data, compare
the strategies, pick one, measure data efficiency and forgetting, and write an adapted run directory
that ``scripts/evaluate.py`` (and export) accept like any sim run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.data.episodes import DatasetError
from sim2real.runs import RunDir, RunError, environment_info
from sim2real.transfer.adapt import (
    UNSUPERVISED,
    UNSUPERVISED_DEFAULT,
    AdaptConfig,
    choose,
    compare_strategies,
    data_efficiency,
    evaluate_offline,
    negative_transfer,
    sim_arrays,
    split_real,
)
from sim2real.transfer.strategies import STRATEGIES


def adapt_run(run_dir: str | Path, data: str | Path, out: str | Path, cfg: AdaptConfig, fmt: str = "auto",
              camera_info: str | Path | None = None, skip_bad: bool = False, overwrite: bool = False,
              reader_options: dict | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Adapt the policy of ``run_dir`` to the real data in ``data``; write the adapted run to ``out``.

    Raises ``DatasetError`` (bad data, nothing written) or ``RunError`` (bad run / output directory).
    Returns the summary written to ``metrics.json``.
    """
    from policies.encoders import save_encoder
    from policies.policy import GraspPolicy
    from sim2real.data.formats import compare_cameras, load_real
    from sim2real.transfer.report import write_markdown, write_png

    t0 = time.perf_counter()
    src = RunDir(run_dir)
    config = src.read_json("config.json")
    if config is None or not (src / "policy.pt").is_file():
        raise RunError(f"{run_dir}: not a finished run directory (needs config.json and policy.pt)")
    train_cfg = config["train"]
    image_size = int(train_cfg["image_size"])
    sim_policy = GraspPolicy.load(src / "policy.pt")
    trained_camera = sim_policy.spec.camera or _default_camera()

    # 1. Real data, fully validated before anything is trained or written.
    log(f"reading {data}")
    ds = load_real(data, fmt, image_size=image_size, skip_bad=skip_bad, **(reader_options or {}))
    for msg in ds.meta.get("skipped", []):
        log(f"  skipped: {msg}")
    camera = ds.meta.get("camera") or trained_camera
    camera_check, tune_camera, lens_warning = None, False, None
    if camera_info is not None:
        from envs.camera import Camera, distortion_warning

        try:
            camera = Camera.from_camera_info(camera_info).to_dict()
            lens_warning = distortion_warning(camera_info)
        except (OSError, ValueError) as e:
            # The camera's own errors name the file already; name it once.
            raise DatasetError(str(e) if str(camera_info) in str(e) else f"{camera_info}: {e}") from None
    if camera is not trained_camera:
        cmp = compare_cameras(trained_camera, camera)
        if cmp["agrees"]:
            camera_check = f"The real camera agrees with the one the run was trained with ({cmp['message']})."
        else:
            tune_camera = camera_info is not None and cfg.sim_tune
            camera_check = (f"The real camera differs from the one the run was trained with: {cmp['message']}. "
                            + ("The policy is first fine-tuned in simulation seen through the real calibration "
                               "(sim_tune); "
                               if tune_camera else "Adaptation can absorb small differences; ")
                            + f"for large ones retrain in simulation with the real calibration: "
                            f"`python scripts/train_sim.py --camera {camera_info or 'CALIB.yaml'}`.")
        log(("  camera: " if cmp["agrees"] else "  WARNING camera: ") + camera_check)
    if lens_warning:
        log(f"  WARNING camera: {lens_warning}")
        camera_check = " ".join(filter(None, [camera_check, f"{lens_warning[0].upper()}{lens_warning[1:]}."]))
    real = split_real(ds, image_size, camera, cfg.val_fraction, cfg.seed, cfg.max_samples, unlabelled_ok=True)
    labelled = int(real.labelled.sum())
    unsupervised = labelled == 0
    log(f"  {len(ds)} images, {labelled} labelled; {len(real.train)} training and {len(real.val)} held-out rows")
    if unsupervised:
        if cfg.strategy not in ("auto", *UNSUPERVISED):
            raise DatasetError(f"{data}: no labelled rows (proprio + grasp_* of a successful grasp), so "
                               f"--strategy {cfg.strategy} cannot train; use one of {', '.join(UNSUPERVISED)}")
        log("  WARNING no labels: unsupervised adaptation only (adabn, dann, coral); nothing to validate on, "
            f"so --strategy auto takes {UNSUPERVISED_DEFAULT}")
        cfg = AdaptConfig(**{**cfg.to_dict(), "compare": tuple(s for s in cfg.compare if s in UNSUPERVISED),
                             "budgets": ()})

    # 2. Simulated rows: DANN/CORAL's source domain, and where forgetting is measured.
    log("loading simulated rows from the run")
    source = sim_arrays(run_dir, cfg.sim_rows, image_size, trained_camera, cfg.seed)
    if source is None and not tune_camera:  # (fine-tuning in simulation brings rows of its own)
        uda = {name for name in STRATEGIES if STRATEGIES[name].uda}
        if cfg.strategy in uda or set(cfg.compare) <= uda:
            raise RunError(f"{run_dir}: the run kept no data/ folder; {', '.join(sorted(uda))} align real features "
                           f"with simulated ones and need it (choose another --strategy / --compare)")
        log("  the run kept no data/ folder: DANN and CORAL are skipped, forgetting is not measured")

    # 3. Output directory: refuse to clobber (or move the old one aside) before the long part.
    dest = RunDir.create(out, overwrite=overwrite)

    # 4. The real calibration disagrees with the run's camera: fine-tune in simulation through it.
    tune_info = None
    if tune_camera:
        from sim2real.transfer.simtune import SimTuneConfig, sim_tune_draws

        log(f"fine-tuning in simulation through the real calibration {camera_info}")
        untuned = evaluate_offline(sim_policy, real.arrays, real.val) if len(real.val) else {"rows": 0}
        # The draws and their average are measured on every labelled row the run may use, for the report
        # (none of them trains on a real label), and so is the untuned policy, to read them against.
        labelled_rows = np.concatenate([real.train, real.val])

        def score(policy):
            return evaluate_offline(policy, real.arrays, labelled_rows)

        # The real frames outside the held-out episodes lend the simulated worlds their surfaces.
        tuned, tune_info = sim_tune_draws(sim_policy, train_cfg, camera_info,
                                          SimTuneConfig(seed=cfg.seed, draws=cfg.sim_tune_draws,
                                                        source_weight=cfg.sim_tune_source_weight),
                                          dest / "data" / "sim_tune", score if len(labelled_rows) else None, log,
                                          target_images=real.arrays["images"][real.outside_val])
        tune_info["untuned_val"] = untuned
        if tune_info.get("average") or tune_info.get("mixed"):  # scored: the untuned policy too, on the same rows
            tune_info["untuned_labelled"] = score(sim_policy)
        sim_policy = tuned
        # Rehearsal, DANN/CORAL and forgetting now use simulated rows seen through the new camera.
        source = sim_arrays(dest.path, cfg.sim_rows, image_size, camera, cfg.seed) or source
        if untuned.get("rows"):
            log(f"  before: val grasp error {untuned['xy_err_cm']:.2f} cm (median), loss {untuned['grasp_loss']:.4f}")

    compare = list(cfg.compare)
    if cfg.strategy != "auto" and cfg.strategy not in compare:
        compare.append(cfg.strategy)
    cfg_compare = AdaptConfig(**{**cfg.to_dict(), "compare": tuple(compare)})
    odd = ", ".join(f"{n} {STRATEGIES[n].steps(cfg.steps)}" for n in compare
                    if STRATEGIES[n].trains and STRATEGIES[n].steps_scale != 1)
    log(f"adapting with {len(compare)} strategies, {cfg.steps} steps each" + (f" ({odd})" if odd else ""))
    # Scratch's data-efficiency fits do not depend on the choice: they share the comparison's processes.
    early = ("scratch",) if cfg.budgets and len(real.train) > 1 else ()
    results, policies = compare_strategies(sim_policy, real, cfg_compare, source, log, budgets_of=early)
    chosen, choice = (choose(results, real.episode[real.val], cfg.seed) if cfg.strategy == "auto"
                      else (cfg.strategy, "--strategy"))
    log(f"chosen: {chosen} ({choice})")
    warnings = negative_transfer(results, chosen)
    if unsupervised:
        warnings.append("no labelled real rows: the strategies could not be compared on held-out real data; "
                        "check the adapted policy closed loop before trusting it")
    for w in warnings:
        log(f"WARNING {w}")
    efficiency = None
    if cfg.budgets and len(real.train) > 1:
        names = [chosen] + (["scratch"] if chosen != "scratch" else [])
        log("data efficiency")
        efficiency = data_efficiency(sim_policy, real, cfg, names, source, log, known=results)

    # 5. The adapted run directory.
    policy = policies[chosen]
    policy.save(dest / "policy.pt", extra={"adapted_from": str(run_dir), "strategy": chosen})
    save_encoder(dest / "encoder.pt", policy.encoder, extra={"adapted_from": str(run_dir), "strategy": chosen})
    summary = {
        "source_run": str(run_dir), "data": str(data), "format": ds.meta.get("format", fmt), "rows": len(ds),
        "labelled": labelled, "train_rows": int(len(real.train)), "val_rows": int(len(real.val)),
        "chosen": chosen, "choice": choice, "results": results, "efficiency": efficiency, "warnings": warnings,
        "camera_check": camera_check, "sim_tune": tune_info, "skipped": ds.meta.get("skipped", []),
        "wall_time_s": time.perf_counter() - t0}
    adapted_config = {**config, "adapt": {**cfg.to_dict(), "chosen": chosen, "source_run": str(run_dir),
                                          "data": str(data), "format": summary["format"],
                                          "camera": camera, "sim_tuned": tune_info is not None,
                                          "environment": environment_info()}}
    dest.write_json("config.json", adapted_config)
    # The product of adaptation is a deployable policy: policy.onnx + policy.json (parity-checked).
    from sim2real.export import ExportError, export_policy

    try:
        # Parity on the real observations themselves (the adapted run keeps no data/ of its own).
        has = np.isfinite(real.arrays["proprio"]).all(axis=1)
        rows = np.flatnonzero(has)[:64]
        observations = (real.arrays["images"][rows], real.arrays["proprio"][rows]) if len(rows) >= 2 else None
        export_policy(dest.path, log=log, observations=observations)
    except ExportError as e:
        summary["warnings"].append(f"export failed: {e}")
        log(f"WARNING export failed: {e}; the adapted weights (policy.pt) are written")
    summary["wall_time_s"] = time.perf_counter() - t0
    dest.write_json("metrics.json", {"adapt": summary, "wall_time_s": summary["wall_time_s"]})
    write_png(dest / "report.png", results, efficiency, chosen)
    write_markdown(dest / "report.md", summary)
    dest.discard_old()
    log(f"wrote {dest.path} (report.md, report.png, policy.pt, policy.onnx, policy.json) in "
        f"{summary['wall_time_s']:.0f} s")
    return summary


def _default_camera() -> dict:
    from envs.camera import Camera

    return Camera().to_dict()
