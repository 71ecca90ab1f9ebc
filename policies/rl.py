"""Reinforcement learning with stable-baselines3 on top of the vision encoder.

- ``make_model``: PPO or SAC on ``PandaGrasp-v0`` (pixels + proprio) with ``GraspExtractor``
  (pretrained encoder, frozen or fine-tuned, or a random one) and a policy MLP shaped like
  ``GraspPolicy``'s action head, so weights move both ways:
- ``load_bc_into_sb3`` warm-starts an SB3 actor from a behaviour-cloned ``GraspPolicy`` and
  ``sb3_into_policy`` copies the RL result back, so evaluation and export treat every run alike.
  (PPO's Gaussian mean is clipped by the env where ``GraspPolicy`` applies tanh; SAC squashes with
  tanh exactly as ``GraspPolicy`` does. The gripper is thresholded at 0 either way.)
- ``make_servo_ppo``: PPO whose actor is the student's own structure - the grasp head's estimate
  through the fixed servo law (``policies.policy.servo_action``) - so a pretrained encoder and grasp
  head start RL where imitation-free pretraining left them (``scripts/bench_ppo_encoder.py --actor servo``).
- ``train_state_teacher``: an SB3 teacher on the privileged ``PandaGraspState-v0`` (object poses),
  usable through ``StateTeacher`` wherever the scripted expert is (``act()``), e.g. to label DAgger.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

import envs  # noqa: F401 - registers the ids
from policies.encoders import Encoder, GraspExtractor
from policies.policy import GraspPolicy

ALGOS = ("ppo", "sac")


def make_env(env_kwargs: dict, workers: int = 1, seed: int = 0, env_id: str = "PandaGrasp-v0"):
    """A monitored SB3 VecEnv with dense reward (``workers`` > 1: subprocesses)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    kwargs = {**env_kwargs, "reward": "dense"}
    vec_cls = SubprocVecEnv if workers > 1 else DummyVecEnv
    extra = {"vec_env_kwargs": {"start_method": "spawn"}} if workers > 1 else {}
    # "envs:<id>" makes gymnasium import ``envs`` (which registers the ids) in spawned workers too.
    return make_vec_env(f"envs:{env_id}", n_envs=workers, seed=seed, env_kwargs=kwargs, vec_env_cls=vec_cls,
                        **extra)


def make_model(algo: str, env, encoder: str | Path | Encoder | None = None, freeze: bool = False,
               seed: int = 0, hidden: int = 256, **kwargs):
    """PPO or SAC with ``GraspExtractor``; ``encoder`` None = randomly initialised encoder."""
    from stable_baselines3 import PPO, SAC

    if algo not in ALGOS:
        raise ValueError(f"algo: must be one of {ALGOS}, got {algo!r}")
    policy_kwargs = {"features_extractor_class": GraspExtractor,
                     "features_extractor_kwargs": {"encoder": encoder, "freeze": freeze},
                     "activation_fn": nn.ReLU, "share_features_extractor": True}
    if algo == "ppo":
        policy_kwargs["net_arch"] = {"pi": [hidden, hidden], "vf": [hidden, hidden]}
        defaults = {"n_steps": 256, "batch_size": 64, "n_epochs": 4, "learning_rate": 3e-4, "ent_coef": 0.0}
        return restore_pretrained(PPO("MultiInputPolicy", env, policy_kwargs=policy_kwargs, seed=seed, verbose=0,
                                      device="cpu", **{**defaults, **kwargs}))
    policy_kwargs["net_arch"] = [hidden, hidden]
    policy_kwargs["share_features_extractor"] = False
    defaults = {"buffer_size": 20000, "learning_starts": 500, "batch_size": 128, "learning_rate": 3e-4}
    return restore_pretrained(SAC("MultiInputPolicy", env, policy_kwargs=policy_kwargs, seed=seed, verbose=0,
                                  device="cpu", **{**defaults, **kwargs}))


def restore_pretrained(model):
    """Undo SB3's orthogonal re-initialisation of pretrained encoders (see ``GraspExtractor``)."""
    for module in model.policy.modules():
        if isinstance(module, GraspExtractor):
            module.restore_pretrained()
    return model


class ServoExtractor(GraspExtractor):
    """``GraspExtractor`` that also passes the raw proprio on: (N, fusion dim + 5), so the actor can
    apply the servo law, which needs the hand's pose in metres, to the fused features."""

    def __init__(self, observation_space, policy: GraspPolicy, freeze: bool = False) -> None:
        super().__init__(observation_space, encoder=policy.encoder, freeze=freeze)
        self.fusion.load_state_dict(policy.fusion.state_dict())
        self._features_dim += 5
        # The whole fusion (encoder and proprio layer) comes from ``policy``: keep all of it for
        # ``restore_pretrained``, not only the encoder.
        self.pretrained_fusion = {k: v.detach().clone() for k, v in self.fusion.state_dict().items()}

    def restore_pretrained(self) -> None:
        self.fusion.load_state_dict(self.pretrained_fusion)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([super().forward(observations), observations["proprio"]], dim=1)


class ServoActionNet(nn.Module):
    """PPO's action mean = servo_action(grasp_head(fused features), proprio). The servo law reads
    "holding" from the opening alone here: this actor has no BC action head to gate it with."""

    def __init__(self, grasp_head: nn.Module, servo=None) -> None:
        super().__init__()
        self.grasp_head = grasp_head
        self.servo = servo  # the policy's ServoLaw (None: the expert's)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        from policies.policy import servo_action

        return servo_action(self.grasp_head(latent[:, :-5]), latent[:, -5:], servo=self.servo)


def make_servo_ppo(env, policy: GraspPolicy, freeze: bool = False, seed: int = 0, log_std_init: float = -1.5,
                   hidden: int = 256, **kwargs):
    """SB3 PPO with the servo actor built from ``policy`` (its encoder, fusion and grasp head are
    copied: pretrained or random, as given). ``freeze`` keeps the encoder fixed; the grasp head and the
    critic always train. ``log_std_init``: exploration noise, in action units (-1.5: std 0.22)."""
    import copy

    from stable_baselines3 import PPO

    if policy.geometry is not None:
        # The actor sees fused features only, not the keypoint maps the geometric offset needs.
        raise ValueError("make_servo_ppo: a policy with grasp geometry (grasp_geometry=true) has no servo PPO "
                         "actor yet; train it with grasp_geometry=false")
    policy = copy.deepcopy(policy)
    policy_kwargs = {"features_extractor_class": ServoExtractor,
                     "features_extractor_kwargs": {"policy": policy, "freeze": freeze},
                     "activation_fn": nn.ReLU, "share_features_extractor": True,
                     "net_arch": {"pi": [], "vf": [hidden, hidden]}, "log_std_init": log_std_init}
    defaults = {"n_steps": 256, "batch_size": 64, "n_epochs": 4, "learning_rate": 3e-4, "ent_coef": 0.0}
    model = PPO("MultiInputPolicy", env, policy_kwargs=policy_kwargs, seed=seed, verbose=0, device="cpu",
                **{**defaults, **kwargs})
    restore_pretrained(model)  # SB3 re-initialised the extractor: put the given weights back, random or not
    pol = model.policy
    pol.action_net = ServoActionNet(policy.grasp_head, policy.servo)
    # The optimizer was built over the placeholder linear action net: rebuild it over the real one.
    pol.optimizer = pol.optimizer_class(pol.parameters(), lr=model.lr_schedule(1), **pol.optimizer_kwargs)
    return model


def _actor_layers(model):
    """(feature extractor, [hidden linear layers], output linear) of the SB3 actor."""
    from stable_baselines3 import PPO

    pol = model.policy
    if isinstance(model, PPO):
        hidden = [m for m in pol.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
        return pol.features_extractor, hidden, pol.action_net
    actor = pol.actor
    hidden = [m for m in actor.latent_pi if isinstance(m, nn.Linear)]
    return actor.features_extractor, hidden, actor.mu


def _copy_linears(dst: list[nn.Linear], src: list[nn.Linear]) -> None:
    with torch.no_grad():
        for d, s in zip(dst, src, strict=True):
            d.weight.copy_(s.weight)
            d.bias.copy_(s.bias)


def load_bc_into_sb3(policy: GraspPolicy, model) -> None:
    """Warm start: copy encoder + fusion and the action MLP of ``policy`` into the SB3 actor
    (and the fusion into a separate critic extractor, if SAC has one)."""
    extractor, hidden, out = _actor_layers(model)
    extractor.fusion.load_state_dict(policy.fusion.state_dict())
    _copy_linears([*hidden, out], [m for m in policy.action_head if isinstance(m, nn.Linear)])
    critic = getattr(model.policy, "critic", None)
    if critic is not None and hasattr(critic, "features_extractor"):
        critic.features_extractor.fusion.load_state_dict(policy.fusion.state_dict())


def sb3_into_policy(model, policy: GraspPolicy) -> None:
    """Copy the SB3 actor back into ``policy`` (inverse of ``load_bc_into_sb3``)."""
    extractor, hidden, out = _actor_layers(model)
    policy.fusion.load_state_dict(extractor.fusion.state_dict())
    _copy_linears([m for m in policy.action_head if isinstance(m, nn.Linear)], [*hidden, out])


def finetune_policy_rl(policy: GraspPolicy, cfg, run) -> dict:
    """The ``rl`` stage of the pipeline: SB3 (``cfg.algo``) warm-started from ``policy``, encoder
    fine-tuned, ``cfg.rl_steps`` env steps; copies the result back into ``policy``."""
    env = make_env(cfg.env_kwargs("train"), workers=cfg.workers, seed=cfg.seed)
    try:
        model = make_model(cfg.algo, env, encoder=policy.encoder, freeze=False, seed=cfg.seed)
        load_bc_into_sb3(policy, model)
        if cfg.algo == "ppo":
            model.policy.log_std.data.fill_(-1.5)  # start close to the imitation policy
        model.learn(total_timesteps=cfg.rl_steps, progress_bar=_has_rich())
        sb3_into_policy(model, policy)
        returns = [ep["r"] for ep in model.ep_info_buffer] if model.ep_info_buffer else []
    finally:
        env.close()
    return {"algo": cfg.algo, "env_steps": cfg.rl_steps, "mean_return_last_episodes":
            float(np.mean(returns)) if returns else None}


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------- state teacher
def train_state_teacher(steps: int, algo: str = "sac", seed: int = 0, randomization: str = "full",
                        workers: int = 1, out: str | Path | None = None):
    """SB3 on ``PandaGraspState-v0`` (privileged object poses, dense reward, no rendering)."""
    from stable_baselines3 import PPO, SAC

    env = make_env({"randomization": randomization, "objects": "train"}, workers=workers, seed=seed,
                   env_id="PandaGraspState-v0")
    cls = SAC if algo == "sac" else PPO
    kwargs = {"learning_starts": 500, "buffer_size": 50000} if algo == "sac" else {"n_steps": 512}
    model = cls("MultiInputPolicy", env, seed=seed, verbose=0, device="cpu", **kwargs)
    try:
        model.learn(total_timesteps=steps)
    finally:
        env.close()
    if out is not None:
        from sim2real.runs import atomic_torch_save
        atomic_torch_save({"kind": "sim2real-state-teacher", "algo": algo,
                           "state_dict": model.policy.state_dict()}, out)
    return model


class StateTeacher:
    """Adapter giving an SB3 state policy the scripted expert's interface: ``act()`` reads the
    privileged state of the (pixel) env it is attached to and returns an action."""

    def __init__(self, env, model) -> None:
        self.env = env.unwrapped
        self.model = model

    def reset(self) -> None:
        pass

    def target_labels(self):
        return None

    def act(self, observation=None) -> np.ndarray:
        obs = self.env.state_observation()
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action, dtype=np.float32)
