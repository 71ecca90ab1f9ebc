"""Record a ``real_grasps/``-style dataset in the proxy-real domain, as a user would on a robot.

Three kinds of episodes, all written in the native episode format (``sim2real.data.episodes``):

- **demonstrations**: the scripted expert drives (standing in for a teleoperator); rows carry the
  executed action, which for teleoperation is also the label (``e_*`` = ``a_*``);
- **interventions** (as in HG-DAgger): the policy drives and the operator takes over after a few
  steps (3-15, seeded) and finishes the grasp. The policy's own states then get a grasp label too --
  what it most needs, since it fails in the states it visits, not in the expert's;
- **policy runs**: a trained run's policy drives alone; rows carry its actions and whether it grasped.

Only what a real robot knows is written: image, proprio, executed action, success, and the
*executed grasp pose* -- the hand pose right after the gripper last started to close -- on the rows
up to that moment. Object poses are never written (a real robot does not have them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim2real.data.episodes import Episode, EpisodeWriter


def executed_grasp(actions: np.ndarray, proprio_after: np.ndarray) -> tuple[int, np.ndarray] | None:
    """The last closing of an episode: index k of the step whose action started the last close
    (gripper command < 0 after >= 0) and the grasp pose (x, y, z m, yaw rad) = the hand pose after
    that step. ``actions`` (T, 5); ``proprio_after`` (T, 5) observed after each action. None if the
    gripper never closed."""
    closed = actions[:, 4] < 0
    onsets = [k for k in range(len(closed)) if closed[k] and (k == 0 or not closed[k - 1])]
    if not onsets:
        return None
    k = onsets[-1]
    return k, proprio_after[k, :4].astype(np.float32)


def record_proxy_real(out: str | Path, run_dir: str | Path | None, demos: int, policy_runs: int, seed: int = 50_000,
                      objects: str = "train", image_size: int = 64, domain: str = "proxy_real",
                      every: int = 1, interventions: int = 0, progress: bool = True) -> dict:
    """Record ``demos`` expert, ``interventions`` policy-then-operator and ``policy_runs`` policy
    episodes into the dataset folder ``out`` (created; appended to when it exists), keeping every
    ``every``-th step (labels are computed on the whole episode first). Returns a summary (episodes,
    rows, labelled rows, successes).
    """
    import gymnasium as gym
    from tqdm.auto import tqdm

    import envs  # noqa: F401 - registers the ids
    from envs.expert import ScriptedExpert
    from policies.train import eval_env_kwargs, run_settings

    policy = None
    if policy_runs > 0 or interventions > 0:
        if run_dir is None:
            raise ValueError("policy runs need a trained run directory (--run)")
        from policies.policy import GraspPolicy

        policy = GraspPolicy.load(Path(run_dir) / "policy.pt")
    run_cfg = {"image_size": image_size}
    if run_dir is not None:  # the run's camera and image size, as its evaluation uses them
        import json

        run_cfg = run_settings(json.loads((Path(run_dir) / "config.json").read_text()), domain)
    env = gym.make("PandaGrasp-v0", disable_env_checker=True, **eval_env_kwargs(run_cfg, objects, domain))
    genv = env.unwrapped
    writer = EpisodeWriter(out, meta={
        "source": f"{domain} recording (sim2real.data.record)", "camera": genv.base_camera.to_dict(),
        "notes": "demonstrations by the scripted expert (teleoperation stand-in) and runs of a trained policy; "
                 "grasp_* = executed grasp pose (hand pose after the last close command), on rows up to it"})
    expert = ScriptedExpert(genv, plan=True)
    plan = ([("demo", k) for k in range(demos)] + [("intervention", k) for k in range(interventions)]
            + [("policy", k) for k in range(policy_runs)])
    summary = {"episodes": 0, "rows": 0, "labelled_rows": 0, "successes": 0, "demos": demos,
               "interventions": interventions, "policy_runs": policy_runs}
    takeover_rng = np.random.default_rng([seed, 11])
    bar = tqdm(plan, desc=f"record {domain}", disable=not progress, unit="ep")
    for n, (kind, _) in enumerate(bar):
        obs, _ = env.reset(seed=seed + n)
        expert.reset()
        images, proprio, actions, after, teleop = [], [], [], [], []
        takeover = {"demo": 0, "intervention": int(takeover_rng.integers(3, 16)), "policy": 10**9}[kind]
        while True:
            # The expert follows every episode (it keeps its plan in step with the world) but acts
            # only once the operator has taken over. Takeovers come early: the executed grasp labels
            # every row before it, and the longer the policy drives, the more it pushes objects away
            # from where the earlier images show them (measured: late takeovers made adaptation worse).
            label = expert.act()
            operator = len(actions) >= takeover
            action = label if operator else policy.act(obs["image"], obs["proprio"])
            teleop.append(operator)
            images.append(obs["image"])
            proprio.append(obs["proprio"])
            actions.append(np.asarray(action, np.float32))
            obs, _, terminated, truncated, info = env.step(action)
            after.append(obs["proprio"])
            if terminated or truncated:
                break
        actions_arr, t = np.stack(actions), len(actions)
        grasp = np.full((t, 4), np.nan, np.float32)
        found = executed_grasp(actions_arr, np.stack(after))
        if found is not None:
            k, pose = found
            grasp[: k + 1] = pose
        success = bool(info["is_success"])
        keep = np.arange(0, t, every)
        operator_label = np.where(np.array(teleop)[:, None], actions_arr, np.nan).astype(np.float32)
        writer.append(Episode(images=np.stack(images)[keep], proprio=np.stack(proprio).astype(np.float32)[keep],
                              action=actions_arr[keep], expert_action=operator_label[keep],
                              grasp=grasp[keep], success=success, source=f"{domain}-{kind}", seed=seed + n,
                              objects=objects))
        summary["episodes"] += 1
        summary["rows"] += len(keep)
        summary["labelled_rows"] += int(np.isfinite(grasp[keep]).all(axis=1).sum()) if success else 0
        summary["successes"] += int(success)
        bar.set_postfix(success=f"{summary['successes']}/{summary['episodes']}")
    env.close()
    return summary
