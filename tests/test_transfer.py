"""Transfer learning: the real-data split, what each strategy trains and leaves alone, the UDA
objectives, offline evaluation and the negative-transfer warning (tiny data, a few steps)."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from envs.camera import Camera
from policies.encoders import images_to_tensor
from policies.policy import GRASP_SCALE, GraspPolicy, grasp_targets
from sim2real.data.episodes import DatasetError, dataset_from_arrays
from sim2real.data.formats import load_real
from sim2real.transfer.adapt import (
    AdaptConfig,
    choose,
    compare_strategies,
    data_efficiency,
    evaluate_offline,
    negative_transfer,
    sim_arrays,
    split_real,
    to_arrays,
    train_strategy,
)
from sim2real.transfer.strategies import (
    STRATEGIES,
    GradReverse,
    adabn,
    coral_loss,
    l2sp_penalty,
    layer_groups,
    set_trainable,
    trainable_encoder_modules,
)

CAMERA = Camera().to_dict()
CFG = AdaptConfig(steps=3, batch=8, budgets=(), sim_rows=100)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> set[str]:
    after = module.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, after[k])}


def bn_keys(state: dict) -> set[str]:
    return {k for k in state if k.endswith(("running_mean", "running_var"))}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: tiny batches gain nothing from more, and a busy machine makes them crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ds(real_dataset):
    return load_real(real_dataset, image_size=64)


@pytest.fixture(scope="module")
def real(ds):
    return split_real(ds, 64, CAMERA, 0.25, seed=0)


@pytest.fixture(scope="module")
def sim_policy(fake_run):
    return GraspPolicy.load(fake_run / "policy.pt")


@pytest.fixture(scope="module")
def source(fake_run):
    return sim_arrays(fake_run, 100, 64, CAMERA, seed=0)


@pytest.fixture(scope="module")
def trained(sim_policy, real):
    """Each strategy trained once on the same rows (the sim policy must stay untouched)."""
    before = snapshot(sim_policy)
    out = {name: train_strategy(sim_policy, STRATEGIES[name], real, real.train, CFG)
           for name in ("zero_shot", "probe", "partial", "adabn", "l2sp")}
    assert changed(before, sim_policy) == set(), "train_strategy modified the sim policy"
    return out


# ------------------------------------------------------------------------------ data
def test_split_is_by_episode_and_covers_exactly_the_labelled_rows(ds, real):
    train_eps, val_eps = set(ds.episode[real.train]), set(ds.episode[real.val])
    assert train_eps and val_eps and not train_eps & val_eps
    assert len(train_eps | val_eps) == 4 and len(val_eps) == 1  # 4 labelled episodes, 25 % held out
    # Failed grasp (episode 4) and unlabelled episode 5 are in neither split; rows after the grasp neither.
    assert not (train_eps | val_eps) & {4, 5}
    rows = np.sort(np.concatenate([real.train, real.val]))
    np.testing.assert_array_equal(rows, np.flatnonzero(real.labelled))
    assert len(rows) == 16 and (ds.step[rows] < 4).all()
    assert len(real.all_rows) == len(ds) == 36  # every image stays available to the unsupervised parts


def test_rows_without_a_grasp_label_train_the_gripper_keypoint_outside_the_held_out_episodes(ds, real):
    rows = real.gripper_only
    assert len(rows) > 0 and not real.labelled[rows].any()
    assert not set(ds.episode[rows]) & set(ds.episode[real.val])
    assert {4, 5} <= set(ds.episode[rows])  # the failed grasp and the unlabelled episode still show the hand
    kp = real.arrays["keypoints"][rows]
    assert np.isnan(kp[:, 0]).all() and np.isfinite(kp[:, 1]).any()  # no grasp point, but the gripper


def test_rows_outside_the_held_out_episodes_are_every_other_row(ds, real):
    rows = real.outside_val
    assert not set(ds.episode[rows]) & set(ds.episode[real.val])
    assert len(rows) + int(np.isin(ds.episode, ds.episode[real.val]).sum()) == len(ds)
    assert set(real.train) <= set(rows) and set(real.gripper_only) <= set(rows)


def test_split_is_seeded(ds):
    a, b = split_real(ds, 64, CAMERA, 0.25, seed=3), split_real(ds, 64, CAMERA, 0.25, seed=3)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.val, b.val)
    vals = {tuple(split_real(ds, 64, CAMERA, 0.25, seed=s).val) for s in range(8)}
    assert len(vals) > 1


def test_failed_grasps_lose_their_grasp_label_without_touching_the_dataset(ds):
    arrays = to_arrays(ds, 64, CAMERA)
    failed = ds.episode == 4
    assert np.isfinite(ds.grasp[failed][:4]).all()  # the recording has the pose ...
    assert np.isnan(arrays["grasp"][failed]).all()  # ... training does not use it
    ok = (ds.episode < 4) & (ds.step < 4)
    np.testing.assert_array_equal(arrays["grasp"][ok], ds.grasp[ok])
    assert np.isnan(arrays["object"]).all()  # a real robot knows no object poses
    kp = arrays["keypoints"]
    assert kp.shape == (36, 2, 2) and np.isfinite(kp[ok]).all() and np.isnan(kp[failed, 0]).all()


def test_split_needs_labels_in_two_episodes(tmp_path):
    n = 8
    grasp = np.full((n, 4), np.nan, np.float32)
    grasp[:3] = [0.5, 0.0, 0.03, 0.0]
    proprio = np.tile(np.array([0.55, 0.0, 0.2, 0.0, 0.08], np.float32), (n, 1))
    one = dataset_from_arrays(tmp_path / "one", {}, np.zeros((n, 64, 64, 3), np.uint8),
                              episode=np.repeat([0, 1], 4), success=np.ones(n), proprio=proprio, grasp=grasp)
    with pytest.raises(DatasetError, match="at least 2 episodes") as info:
        split_real(one, 64, CAMERA, 0.25, seed=0)
    assert str(tmp_path / "one") in str(info.value) and "1 episode" in str(info.value)


@pytest.mark.parametrize("max_samples", [5, 7, 8, 12, 100])
def test_split_respects_max_samples(ds, max_samples):
    real = split_real(ds, 64, CAMERA, 0.25, seed=0, max_samples=max_samples)
    assert len(real.train) >= 1 and len(real.val) >= 1
    assert len(real.train) + len(real.val) <= max_samples
    assert not set(ds.episode[real.train]) & set(ds.episode[real.val])
    assert real.labelled[real.train].all() and real.labelled[real.val].all()


def test_max_samples_below_two_episodes_is_an_error(ds):
    with pytest.raises(DatasetError, match="max_samples=3"):
        split_real(ds, 64, CAMERA, 0.25, seed=0, max_samples=3)


def test_sim_rows_come_from_the_runs_data_or_none(fake_run, fake_run_without_data, source):
    assert source is not None and 0 < len(source["images"]) <= 100
    assert np.isfinite(source["grasp"]).all() and np.isfinite(source["proprio"]).all()
    assert source["images"].shape[1:] == (64, 64, 3) and source["images"].dtype == np.uint8
    assert sim_arrays(fake_run_without_data, 100, 64, CAMERA, seed=0) is None


# ------------------------------------------------------------------------ strategies
def test_zero_shot_is_the_sim_policy_unchanged(sim_policy, trained):
    policy, history = trained["zero_shot"]
    assert history == [] and policy is not sim_policy
    assert changed(snapshot(sim_policy), policy) == set()


def test_probe_freezes_encoder_weights_and_batchnorm_statistics(sim_policy, trained):
    policy, history = trained["probe"]
    assert len(history) == CFG.steps
    assert changed(snapshot(sim_policy.encoder), policy.encoder) == set()
    heads = changed(snapshot(sim_policy), policy)
    assert any(k.startswith("grasp_head.") for k in heads) and any(k.startswith("fusion.proprio.") for k in heads)


def test_partial_trains_only_the_top_blocks(sim_policy, trained):
    policy, _ = trained["partial"]
    before = snapshot(sim_policy.encoder)
    diff = changed(before, policy.encoder)
    assert not {k for k in diff if k.startswith(("blocks.0.", "blocks.1."))}, diff
    for block in (2, 3):
        assert f"blocks.{block}.0.weight" in diff  # conv weights
        assert {f"blocks.{block}.1.running_mean", f"blocks.{block}.1.running_var"} <= diff  # BN in train mode
    assert "head.0.weight" in diff


def test_adabn_function_changes_statistics_not_weights(sim_policy, ds):
    policy = copy.deepcopy(sim_policy)
    before = snapshot(policy.encoder)
    adabn(policy, images_to_tensor(ds.images))
    diff = changed(before, policy.encoder)
    bn = bn_keys(before)
    assert bn and bn <= diff
    params = {n for n, _ in policy.encoder.named_parameters()}
    assert not diff & params
    # The original momentum and mode come back.
    for m in policy.encoder.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.momentum == 0.1 and m.training is False


def test_adabn_strategy_keeps_the_adapted_statistics_while_heads_train(sim_policy, trained, real):
    policy, _ = trained["adabn"]
    reference = copy.deepcopy(sim_policy)
    adabn(reference, images_to_tensor(real.arrays["images"]))
    enc = snapshot(policy.encoder)
    for k, v in snapshot(reference.encoder).items():
        assert torch.equal(v, enc[k]), k  # frozen blocks stay in eval mode while the heads train
    assert bn_keys(enc) <= changed(snapshot(sim_policy.encoder), policy.encoder)
    assert "grasp_head.0.weight" in changed(snapshot(sim_policy), policy)


def test_adabn_statistics_do_not_depend_on_the_batch_size(sim_policy):
    """``adabn`` promises "the exact population statistics". For the first BatchNorm (whose input
    does not depend on other BatchNorms) they must equal the mean / unbiased variance of the first
    convolution's output over all images, however the images are batched."""
    gen = torch.Generator().manual_seed(0)
    images = torch.cat([0.3 * torch.rand(32, 3, 64, 64, generator=gen),  # a dark session, then a bright one
                        0.7 + 0.3 * torch.rand(32, 3, 64, 64, generator=gen)])
    enc = sim_policy.encoder
    with torch.no_grad():
        x = enc.blocks[0][0]((images - enc.mean) / enc.std)
    mean, var = x.mean(dim=(0, 2, 3)), x.transpose(0, 1).flatten(1).var(dim=1, unbiased=True)
    for batch in (64, 16):
        policy = copy.deepcopy(sim_policy)
        adabn(policy, images, batch=batch)
        bn = policy.encoder.blocks[0][1]
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-3, atol=1e-5, msg=f"batch={batch}: mean")
        torch.testing.assert_close(bn.running_var, var, rtol=1e-3, atol=1e-5, msg=f"batch={batch}: variance")


def test_gradual_unfreezing_releases_groups_top_down(sim_policy):
    policy = copy.deepcopy(sim_policy)
    gradual = STRATEGIES["gradual"]
    groups = layer_groups(policy)[1:]
    assert trainable_encoder_modules(policy, gradual, 0.0) == []
    assert trainable_encoder_modules(policy, gradual, 1.0) == [m for g in groups for m in g]
    counts = [len(trainable_encoder_modules(policy, gradual, p)) for p in np.linspace(0, 1, 61)]
    assert counts == sorted(counts) and len(set(counts)) == len(groups) + 1
    two = trainable_encoder_modules(policy, gradual, 2.5 / (len(groups) + 1))
    blocks = policy.encoder.blocks
    assert policy.encoder.head in two and blocks[3] in two and blocks[2] not in two and blocks[0] not in two
    # set_trainable follows the schedule: at the start nothing in the encoder learns, frozen blocks are in eval.
    set_trainable(policy, gradual, 0.0)
    assert not any(p.requires_grad for p in policy.encoder.parameters())
    assert all(p.requires_grad for p in policy.grasp_head.parameters())
    assert not any(b.training for b in blocks) and policy.grasp_head.training
    set_trainable(policy, gradual, 1.0)
    assert all(b.training for b in blocks) and all(p.requires_grad for p in blocks[0].parameters())


def test_full_fine_tuning_trains_every_encoder_parameter(sim_policy):
    """Strategies that fine-tune "everything" (and gradual unfreezing at the end of its schedule) must
    leave no encoder parameter frozen -- including the spatial softmax's learned temperature
    (``encoder.keypoints.log_temperature``), which the keypoint loss trains in simulation."""
    frozen = {}
    for name in ("full", "l2sp", "dann", "coral", "scratch", "gradual"):
        policy = copy.deepcopy(sim_policy)
        set_trainable(policy, STRATEGIES[name], 1.0)
        frozen[name] = [n for n, p in policy.encoder.named_parameters() if not p.requires_grad]
    assert frozen == {name: [] for name in frozen}, f"frozen encoder parameters: {frozen}"


def test_scratch_trains_twice_the_steps_of_the_pretrained_strategies(sim_policy, real, trained):
    # The baseline starts from random weights; trained as short as the others it would flatter them.
    _, history = train_strategy(sim_policy, STRATEGIES["scratch"], real, real.train, CFG)
    assert [row["step"] for row in history] == list(range(1, 2 * CFG.steps + 1))
    assert [row["step"] for row in trained["l2sp"][1]] == list(range(1, CFG.steps + 1))


def test_scratch_starts_from_a_fresh_seeded_initialization(sim_policy):
    untrained = dataclasses.replace(STRATEGIES["scratch"], trains=False)
    a, _ = train_strategy(sim_policy, untrained, None, np.array([]), CFG)
    b, _ = train_strategy(sim_policy, untrained, None, np.array([]), CFG)
    sim, fresh = snapshot(sim_policy), snapshot(a)
    assert fresh.keys() == sim.keys() and all(fresh[k].shape == sim[k].shape for k in sim)
    assert not torch.equal(fresh["fusion.encoder.blocks.0.0.weight"], sim["fusion.encoder.blocks.0.0.weight"])
    assert not torch.equal(fresh["grasp_head.0.weight"], sim["grasp_head.0.weight"])
    assert changed(fresh, b) == set()  # the same seed, the same start
    assert a.spec == sim_policy.spec and a.control == sim_policy.control


def test_l2sp_penalty_is_zero_at_the_sim_weights_and_grows_with_distance(sim_policy, trained):
    policy = copy.deepcopy(sim_policy)
    set_trainable(policy, STRATEGIES["l2sp"])
    reference = {n: p.detach().clone() for n, p in policy.encoder.named_parameters()}
    assert l2sp_penalty(policy, reference).item() == 0.0
    weight = policy.encoder.blocks[0][0].weight
    with torch.no_grad():
        weight[0, 0, 0, 0] += 0.1
    assert l2sp_penalty(policy, reference).item() == pytest.approx(0.01, rel=1e-4)
    weight.requires_grad_(False)  # only trainable weights count
    assert l2sp_penalty(policy, reference).item() == 0.0
    _, history = trained["l2sp"]
    assert history[0]["l2sp"] == 0 and history[-1]["l2sp"] > 0


def test_grad_reverse_is_identity_forward_and_negates_scaled_gradients():
    x = torch.randn(4, 3, requires_grad=True)
    y = GradReverse.apply(x, 0.5)
    assert torch.equal(y, x)
    upstream = torch.randn(4, 3)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -0.5 * upstream)


def test_coral_loss_compares_covariances():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, 8, generator=gen)
    assert coral_loss(a, a.clone()).item() == pytest.approx(0.0, abs=1e-9)
    assert coral_loss(a, a + 5.0).item() == pytest.approx(0.0, abs=1e-6)  # a mean shift is not CORAL's business
    different = coral_loss(a, 3.0 * torch.randn(64, 8, generator=gen)).item()
    assert different > 0.1
    assert coral_loss(a, 2.0 * a).item() > 0


@pytest.mark.parametrize("name", ["dann", "coral"])
def test_uda_strategies_align_with_a_sim_source(sim_policy, real, source, name):
    policy, history = train_strategy(sim_policy, STRATEGIES[name], real, real.train, CFG, source)
    assert len(history) == CFG.steps
    for row in history:
        assert {"task", "sim_task", "align"} <= row.keys()
        assert all(math.isfinite(v) for v in row.values())
    assert changed(snapshot(sim_policy.encoder), policy.encoder)
    with pytest.raises(ValueError, match=name):
        train_strategy(sim_policy, STRATEGIES[name], real, real.train, CFG, None)


def test_compare_skips_uda_without_a_source_and_records_forgetting_with_one(sim_policy, real, source):
    cfg = AdaptConfig(steps=1, batch=8, budgets=(), compare=("zero_shot", "coral"))
    logged = []
    results, policies = compare_strategies(sim_policy, real, cfg, None, logged.append)
    assert list(results) == ["zero_shot"] and "sim" not in results["zero_shot"]
    assert any("coral" in line and "skipped" in line for line in logged)
    results, _ = compare_strategies(sim_policy, real, cfg, source, logged.append)
    assert list(results) == ["zero_shot", "coral"]
    assert results["coral"]["sim"]["rows"] == len(source["images"])
    assert results["zero_shot"]["val"]["rows"] == len(real.val)


def test_strategies_trained_side_by_side_equal_those_trained_one_after_another(sim_policy, real, source):
    # Every fit seeds its own random numbers, so processes change the wall time, not the result
    # (up to float summation order: one thread per worker).
    kw = dict(steps=3, batch=8, budgets=(2,), sim_rows=100, compare=("probe", "scratch", "coral"))
    one = compare_strategies(sim_policy, real, AdaptConfig(workers=1, **kw), source, lambda _: None)
    two = compare_strategies(sim_policy, real, AdaptConfig(workers=2, **kw), source, lambda _: None)
    assert list(one[0]) == list(two[0]) == ["probe", "scratch", "coral"]  # the asked order, not finishing order
    for name in kw["compare"]:
        assert one[0][name]["val"]["grasp_loss"] == pytest.approx(two[0][name]["val"]["grasp_loss"], rel=1e-3)
        a, b = snapshot(one[1][name]), snapshot(two[1][name])
        assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a), name
    curves = [data_efficiency(sim_policy, real, AdaptConfig(workers=w, **kw), ["scratch"], source, lambda _: None)
              for w in (1, 2)]
    assert curves[0]["budgets"] == curves[1]["budgets"] == [2, len(real.train)]
    assert curves[0]["grasp_loss"]["scratch"] == pytest.approx(curves[1]["grasp_loss"]["scratch"], rel=1e-3)
    # Scratch's budgets run with the comparison (they do not depend on the choice); the curve reuses them.
    early, _ = compare_strategies(sim_policy, real, AdaptConfig(workers=2, **kw), source, lambda _: None,
                                  budgets_of=("scratch",))
    assert list(early["scratch"]["budgets"]) == [2] and "budgets" not in early["probe"]
    reused = data_efficiency(sim_policy, real, AdaptConfig(workers=2, **kw), ["scratch", "probe"], source,
                             lambda _: None, known=early)
    assert reused["grasp_loss"]["scratch"] == pytest.approx(curves[0]["grasp_loss"]["scratch"], rel=1e-3)


# ------------------------------------------------------------------------ evaluation
class Oracle(nn.Module):
    """A grasp head that answers ``targets`` whatever it sees."""

    def __init__(self, targets: torch.Tensor) -> None:
        super().__init__()
        self.targets = targets

    modes = 1

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.targets[: len(fused)]

    def hypotheses(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self(fused)[:, None], torch.zeros(len(fused), 1)

    def select(self, hyps: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return hyps[:, 0]


def _oracle(sim_policy, real, shift_x=0.0, turn=0.0):
    idx = real.val
    grasp = torch.as_tensor(real.arrays["grasp"][idx]).clone()
    grasp[:, 0] += shift_x
    grasp[:, 3] += turn
    policy = copy.deepcopy(sim_policy)
    policy.grasp_head = Oracle(grasp_targets(grasp, torch.as_tensor(real.arrays["proprio"][idx])))
    return evaluate_offline(policy, real.arrays, idx)


def test_evaluate_offline_is_zero_for_a_perfect_grasp_head(sim_policy, real):
    m = _oracle(sim_policy, real)
    assert m["rows"] == len(real.val)
    for key in ("grasp_loss", "xy_err_cm", "xy_err_cm_mean", "yaw_err_deg"):
        assert m[key] == pytest.approx(0.0, abs=1e-4), key
    # A half turn is the same grasp.
    assert _oracle(sim_policy, real, turn=math.pi)["yaw_err_deg"] == pytest.approx(0.0, abs=1e-3)


def test_evaluate_offline_measures_centimetres_and_degrees(sim_policy, real):
    m = _oracle(sim_policy, real, shift_x=0.01, turn=math.radians(10))
    assert m["xy_err_cm"] == pytest.approx(1.0, abs=1e-3) and m["xy_err_cm_mean"] == pytest.approx(1.0, abs=1e-3)
    assert m["yaw_err_deg"] == pytest.approx(10.0, abs=1e-2)
    assert m["grasp_loss"] > 0
    assert GRASP_SCALE == 0.05  # the head's unit the cm conversion relies on


def test_evaluate_offline_changes_with_the_policy(sim_policy, real, trained):
    base = evaluate_offline(sim_policy, real.arrays, real.val)
    probe = evaluate_offline(trained["probe"][0], real.arrays, real.val)
    for m in (base, probe):
        assert m["rows"] == len(real.val)
        assert all(math.isfinite(m[k]) for k in ("grasp_loss", "xy_err_cm", "xy_err_cm_mean", "yaw_err_deg"))
    assert base["grasp_loss"] != probe["grasp_loss"] and base["xy_err_cm"] != probe["xy_err_cm"]
    assert evaluate_offline(sim_policy, real.arrays, np.array([], dtype=int)) == {"rows": 0}
    rows = evaluate_offline(sim_policy, real.arrays, real.val, per_row=True)["row_loss"]
    assert len(rows) == len(real.val) and np.mean(rows) == pytest.approx(base["grasp_loss"], rel=1e-5)


def test_choice_and_negative_transfer_warnings():
    results = {name: {"val": {"rows": 10, "grasp_loss": loss}}
               for name, loss in (("zero_shot", 0.5), ("probe", 0.3), ("full", 0.35), ("scratch", 0.32))}
    assert choose(results) == ("probe", "lowest held-out grasp loss")
    # A diverged fit (NaN loss) ranks last, wherever it stands in the comparison's order.
    assert choose({"full": {"val": {"rows": 10, "grasp_loss": float("nan")}}, **results})[0] == "probe"
    assert negative_transfer(results, "probe") == []
    warnings = negative_transfer(results, "full")
    assert len(warnings) == 1 and "NEGATIVE TRANSFER" in warnings[0] and "scratch" in warnings[0]
    both = negative_transfer({**results, "full": {"val": {"rows": 10, "grasp_loss": 0.9}}}, "full")
    assert len(both) == 2 and any("zero_shot" in w for w in both)
    assert negative_transfer(results, "scratch") == []
    # The from-scratch baseline transfers nothing: worse than zero-shot is said as such, not as
    # negative transfer.
    (note,) = negative_transfer({**results, "scratch": {"val": {"rows": 10, "grasp_loss": 0.6}}}, "scratch")
    assert note.startswith("WORSE THAN ZERO-SHOT") and "NEGATIVE TRANSFER" not in note


def test_auto_replaces_zero_shot_only_beyond_the_noise_of_the_held_out_episodes():
    groups = np.repeat(np.arange(8), 5)
    zero = np.full(40, 0.30)

    def results(other, zero=zero):
        return {"zero_shot": {"val": {"rows": len(zero), "grasp_loss": float(zero.mean()), "row_loss": zero.tolist()}},
                "adabn": {"val": {"rows": len(other), "grasp_loss": float(np.mean(other)), "row_loss": list(other)}}}

    # Better in every one of 8 episodes: chosen, with the interval and the test in the reason.
    steady = zero - 0.05
    chosen, why = choose(results(steady), groups)
    assert chosen == "adabn" and "interval over 8 held-out episodes" in why and "p = 0.0039" in why
    # Lower on average, but only thanks to one episode (three are worse): zero-shot kept.
    mixed = zero + np.repeat([-0.30, 0.04, 0.04, -0.01, 0.04, -0.01, -0.01, -0.01], 5)
    assert mixed.mean() < zero.mean()
    chosen, why = choose(results(mixed), groups)
    assert chosen == "zero_shot" and "within the split's noise" in why
    # Four episodes, better in each: the bootstrap interval excludes zero, but no sign pattern of 4
    # episodes is rarer than 1/16, so zero-shot is kept and the reason says how many it takes.
    four, few = np.repeat(np.arange(4), 5), np.full(20, 0.30)
    chosen, why = choose(results(few - 0.05, few), four)
    assert chosen == "zero_shot" and "4 held-out episodes cannot show a gain" in why and "at least 6" in why
    # One held-out episode cannot tell: zero-shot kept; without groups, the plain lowest loss.
    assert choose(results(steady), np.zeros(40))[0] == "zero_shot"
    assert choose(results(mixed))[0] == "adabn"


def test_without_labelled_held_out_rows_the_unsupervised_default_is_chosen():
    unscored = {name: {"val": {"rows": 0}} for name in ("zero_shot", "adabn", "dann")}
    assert choose(unscored)[0] == "adabn"
    assert negative_transfer(unscored, "adabn") == []


# ---------------------------------------------------------------------------- config
@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "finetune"}, "finetune"),
    ({"compare": ("probe", "bogus")}, "bogus"),
    ({"steps": 0}, "steps"),
    ({"batch": 0}, "batch"),
    ({"sim_rows": 0}, "sim_rows"),
    ({"val_fraction": 0.0}, "val_fraction"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"max_samples": 1}, "max_samples"),
    ({"lr": 0.0}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"lr": True}, "lr"),
    ({"lr": float("inf")}, "lr"),
])
def test_adapt_config_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdaptConfig(**kwargs)


def test_adapt_config_round_trips():
    cfg = AdaptConfig(strategy="probe", compare=["zero_shot", "probe"], budgets=[5, "10"], steps=7)
    assert cfg.compare == ("zero_shot", "probe") and cfg.budgets == (5, 10)
    assert AdaptConfig(**cfg.to_dict()) == cfg


def test_unlabelled_real_data_adapts_without_supervision(fake_run, write_dataset, tmp_path):
    from sim2real.transfer.adapt import UNSUPERVISED
    from sim2real.transfer.run import adapt_run

    data = write_dataset(tmp_path / "unlabelled", episodes=3, steps=4, labelled=(), failed=(), teleop=())
    cfg = AdaptConfig(steps=2, batch=8, budgets=(10,), sim_rows=20)
    summary = adapt_run(fake_run, data, tmp_path / "out", cfg, log=lambda _msg: None)
    assert summary["labelled"] == 0 and summary["chosen"] == "adabn"
    assert set(summary["results"]) <= set(UNSUPERVISED) and "scratch" not in summary["results"]
    assert any("no labelled real rows" in w for w in summary["warnings"])
    assert (tmp_path / "out" / "policy.pt").is_file()
    with pytest.raises(DatasetError, match="no labelled rows"):
        adapt_run(fake_run, data, tmp_path / "out2", AdaptConfig(strategy="full", steps=2, budgets=()),
                  log=lambda _msg: None)
    assert not (tmp_path / "out2").exists()


def test_sim_replay_trains_on_simulated_rows_too(sim_policy, real, source):
    on = train_strategy(sim_policy, STRATEGIES["probe"], real, real.train, AdaptConfig(steps=3, batch=8), source)[1]
    off = train_strategy(sim_policy, STRATEGIES["probe"], real, real.train,
                         AdaptConfig(steps=3, batch=8, sim_replay=0.0), source)[1]
    assert "sim_task" in on[-1] and "sim_task" not in off[-1]
