"""The rivals of Jodelet et al.'s Tables 1-2 (iCaRL, BiC, WA, EEIL, SS-IL) and their bias corrections as plugins:
hand-computed values, outputs of the official code on the same tensors, and runs that compose them."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from cil.strategies.bic_bias_layer import BiasCorrectionLayer, BiasLayerConfig, bias_corrected, bias_stage_loss
from cil.strategies.bsce import balanced_softmax_cross_entropy
from cil.strategies.icarl import icarl_classification, icarl_distillation
from cil.strategies.rebalancing import interleaved_replay_positions, separated_softmax_cross_entropy
from cil.strategies.task_distillation import task_wise_distillation
from cil.strategies.weight_aligning import WeightAligning, WeightAligningConfig, aligning_factor

from cil.cli import main
from cil.models import build_net
from tests.helpers import small_engine
from tests.test_end_to_end import TINY

# ------------------------------------------------------------------ hand-computed values


def bce(z: float, t: float) -> float:
    s = 1 / (1 + math.exp(-z))
    return -(t * math.log(s) + (1 - t) * math.log(1 - s))


def test_icarl_targets_are_the_previous_sigmoids_for_old_classes_and_one_hot_for_new():
    """Two samples, 2 old classes and 1 new (N_t = 3): Alg. 3's loss is the BCE mean over the 6 outputs."""
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, -1.0, 3.0]])
    teacher = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
    targets = torch.tensor([2, 0])  # a new-class sample, then an exemplar of old class 0
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    old = bce(0.0, s(1.0)) + bce(2.0, s(-2.0)) + bce(1.0, s(0.0)) + bce(-1.0, s(0.5))  # the exemplar's class too
    new = bce(-1.0, 1.0) + bce(3.0, 0.0)
    distillation = icarl_distillation(logits, teacher)
    classification = icarl_classification(logits, targets, n_old=2)
    assert distillation.item() == pytest.approx(old / 6, rel=1e-6)
    assert classification.item() == pytest.approx(new / 6, rel=1e-6)
    assert icarl_classification(logits, targets, n_old=0).item() == pytest.approx(  # the base step: all one-hot
        (bce(0.0, 0) + bce(2.0, 0) + bce(-1.0, 1) + bce(1.0, 1) + bce(-1.0, 0) + bce(3.0, 0)) / 6, rel=1e-6
    )


def test_task_wise_distillation_has_one_softmax_per_step():
    logits = torch.tensor([[1.0, 0.0, 2.0, 2.0, 5.0]])
    teacher = torch.tensor([[0.0, 0.0, 0.0, 2.0]])
    # step 0 = classes 0-1, step 1 = classes 2-3; T = 2
    p = [0.5, 0.5]
    q = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    kl0 = sum(a * math.log(a / b) for a, b in zip(p, q))
    p1 = [1 / (1 + math.e), math.e / (1 + math.e)]
    q1 = [0.5, 0.5]
    kl1 = sum(a * math.log(a / b) for a, b in zip(p1, q1))
    got = task_wise_distillation(logits, teacher, [[0, 1], [2, 3]], temperature=2.0)
    assert got.item() == pytest.approx(4 * (kl0 + kl1), rel=1e-6)
    assert task_wise_distillation(logits, teacher, [[0, 1], [2, 3]], 2.0, squared_temperature=False).item() == (
        pytest.approx(kl0 + kl1, rel=1e-6)
    )


def test_weight_aligning_rescales_the_new_norms_to_the_old_mean():
    old = torch.tensor([[3.0, 4.0], [0.0, 1.0]])  # norms 5 and 1: mean 3
    new = torch.tensor([[6.0, 8.0]])  # norm 10
    assert aligning_factor(old, new).item() == pytest.approx(0.3)
    torch.manual_seed(0)
    model = build_net("tiny", "linear")
    model.head.add_classes(2)
    model.head.add_classes(2)
    engine = small_engine(model, n_classes=4, n_old=2)
    plugin = WeightAligning(WeightAligningConfig(norm="l2", max_gamma=None))  # PyCIL's weight_align
    before = [g.weight.detach().clone() for g in model.head.groups]
    plugin.after_training(engine)
    old_norm = before[0].norm(dim=1).mean()
    assert model.head.groups[1].weight.norm(dim=1).mean().item() == pytest.approx(old_norm.item(), rel=1e-6)
    assert torch.equal(model.head.groups[0].weight, before[0])  # old weights untouched
    assert engine.step_record["wa_gamma"] == pytest.approx((old_norm / before[1].norm(dim=1).mean()).item(), rel=1e-5)
    plugin.after_batch(engine)  # weight clipping after an update
    assert all(float(g.weight.detach().min()) >= 0 for g in model.head.groups)
    assert any(float(w.min()) < 0 for w in before)


def test_weight_aligning_as_the_authors_code_l1_norms_and_gamma_clamped_at_one():
    old = torch.tensor([[3.0, -4.0], [0.0, 1.0]])  # L1 norms 7 and 1: mean 4 (L2: 5 and 1, mean 3)
    assert aligning_factor(old, torch.tensor([[6.0, 8.0]]), p=1).item() == pytest.approx(4 / 14)
    assert aligning_factor(old, torch.tensor([[6.0, 8.0]]), p=2).item() == pytest.approx(3 / 10)
    torch.manual_seed(0)
    model = build_net("tiny", "linear")
    model.head.add_classes(2)
    model.head.add_classes(2)
    engine = small_engine(model, n_classes=4, n_old=2)
    with torch.no_grad():
        model.head.groups[1].weight.mul_(0.01)  # new weights far smaller than the old: ratio > 1
    before = model.head.groups[1].weight.detach().clone()
    WeightAligning(WeightAligningConfig()).after_training(engine)
    assert torch.equal(model.head.groups[1].weight, before)  # clamped at 1: never enlarged
    assert engine.step_record["wa_gamma"] == 1.0 and engine.step_record["wa_ratio"] > 50
    assert engine.step_record["wa_norm"] == "l1"
    with torch.no_grad():
        model.head.groups[1].weight.mul_(1000.0)  # now far larger: shrunk to the old classes' mean L1 norm
    WeightAligning(WeightAligningConfig()).after_training(engine)
    old_l1 = model.head.groups[0].weight.norm(p=1, dim=1).mean()
    assert model.head.groups[1].weight.norm(p=1, dim=1).mean().item() == pytest.approx(old_l1.item(), rel=1e-5)
    assert engine.step_record["wa_gamma"] == engine.step_record["wa_ratio"] < 1


def test_bic_bias_layer_forward_and_its_stage_two_gradient():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    alpha = torch.tensor(0.5, requires_grad=True)
    beta = torch.tensor(-1.0, requires_grad=True)
    corrected = bias_corrected(logits, 1, alpha, beta)
    assert corrected.tolist() == [[1.0, 0.0, 0.5], [0.0, -1.5, 1.0]]  # old class kept, new ones alpha z + beta
    targets = torch.tensor([0, 2])
    loss = bias_stage_loss(logits, targets, 1, alpha, beta, beta_decay=0.1)
    loss.backward()
    p = F.softmax(corrected.detach(), dim=1)
    y = F.one_hot(targets, 3).float()
    # d CE / d alpha = mean_b sum_{k new} (p - y) z ;  d / d beta = mean_b sum_{k new} (p - y) + 0.1 beta
    d_alpha = ((p - y)[:, 1:] * logits[:, 1:]).sum(1).mean().item()
    d_beta = (p - y)[:, 1:].sum(1).mean().item() + 0.1 * -1.0
    assert alpha.grad.item() == pytest.approx(d_alpha, abs=1e-6)
    assert beta.grad.item() == pytest.approx(d_beta, abs=1e-6)


def test_ratio_preserving_batches_hold_a_fixed_replay_share():
    labels = torch.tensor([0] * 6 + [1] * 6 + [2] * 30 + [3] * 20)  # 12 exemplars, 50 new-class samples
    positions = interleaved_replay_positions(labels, 2, 12, 4, torch.Generator().manual_seed(0))
    batches = positions.split(16)
    for batch in batches[:-1]:
        assert int((labels[batch] < 2).sum()) == 4 and int((labels[batch] >= 2).sum()) == 12
    last = labels[batches[-1]]
    assert int((last >= 2).sum()) == 2 and int((last < 2).sum()) == 1  # 50 = 4 x 12 + 2: ceil(2 x 4 / 12) old
    new = positions[labels[positions] >= 2]
    assert sorted(new.tolist()) == list(range(12, 62))  # every new-class sample once per epoch


# ------------------------------------------------------------------ the official code on the same tensors

LOGITS = [
    [-1.13, -1.15, -0.25, -0.43, 0.85, 0.69, -0.32, -2.12, 0.32],
    [-1.26, 0.35, 0.31, 0.12, 1.24, 1.12, -0.25, -1.35, -1.7],
    [0.57, 0.79, 0.6, -1.56, -0.34, 1.85, 0.75, -0.59, -0.17],
    [0.18, 1.39, 1.59, 0.95, -0.84, -0.61, 0.03, -0.49, 0.25],
    [0.44, 0.11, 0.54, -0.4, 0.21, -0.45, -0.57, -0.56, 0.59],
    [1.54, 1.82, -0.55, -1.33, 0.19, -0.07, -0.49, -1.5, -0.19],
]
TEACHER = [
    [-0.47, 0.34, 1.51, 2.08, 1.71, 2.38],
    [-1.13, -0.32, -0.14, 0.81, 0.33, -0.76],
    [-1.6, 0.02, -0.75, 0.19, 1.04, 0.36],
    [0.0, -0.53, 0.28, 0.43, -0.8, -1.3],
    [-0.75, -1.31, -0.22, -2.44, -0.43, 0.23],
    [0.8, -0.18, -0.37, -1.21, -0.62, -0.46],
]
TARGETS = [6, 7, 8, 6, 1, 4]
"""Two old steps of 3 classes (labels 0-5) and a new one (6-8): four new-class samples, then two exemplars.
The numbers below are what the official functions computed on these tensors (run outside the repository)."""
STEPS = [[0, 1, 2], [3, 4, 5]]


def test_ss_il_loss_equals_the_official_code():
    """hongjoon0805/SS-IL-Official@8c323811f99f6da8e8d794b663c43bfe63864a3f, trainer/ssil.py Trainer.train() on one
    batch of 4 new-class samples and 2 replayed ones: separated CE (sum / 6) + task-wise KD (T = 2, KL x T^2)."""
    logits, teacher, targets = torch.tensor(LOGITS), torch.tensor(TEACHER), torch.tensor(TARGETS)
    ours = separated_softmax_cross_entropy(logits, targets, 6) + task_wise_distillation(logits, teacher, STEPS, 2.0)
    assert ours.item() == pytest.approx(2.117264747619629, abs=1e-6)


def test_eeil_losses_equal_the_official_code():
    """The same commit, trainer/eeil.py Trainer.train(): CE over all classes + a distillation per old step (main
    training), and CE + the new classes' distillation from the model before finetuning (bft=True; that model's
    logits of the new classes are all 0 here)."""
    logits, teacher, targets = torch.tensor(LOGITS), torch.tensor(TEACHER), torch.tensor(TARGETS)
    main_loss = F.cross_entropy(logits, targets) + task_wise_distillation(logits, teacher, STEPS, 2.0)
    assert main_loss.item() == pytest.approx(3.349036931991577, abs=1e-6)
    before = torch.cat([teacher, torch.zeros(6, 3)], dim=1)
    finetuning = F.cross_entropy(logits, targets) + task_wise_distillation(logits, before, [[6, 7, 8]], 2.0)
    assert finetuning.item() == pytest.approx(2.9960005283355713, abs=1e-6)


def test_bic_bias_layer_equals_the_official_reimplementation():
    """The same commit, trainer/bic.py: BiasLayer (alpha 0.7, beta -0.3) on the new classes' logits and the CE of
    the corrected output in bias_correction(), with its gradients (cil's beta_decay set to 0: that code has none)."""
    logits, targets = torch.tensor(LOGITS), torch.tensor(TARGETS)
    alpha = torch.tensor(0.7, requires_grad=True)
    beta = torch.tensor(-0.3, requires_grad=True)
    corrected = bias_corrected(logits, 6, alpha, beta)
    official_new = [
        [-0.524, -1.784, -0.076],
        [-0.475, -1.245, -1.49],
        [0.225, -0.713, -0.419],
        [-0.279, -0.643, -0.125],
        [-0.699, -0.692, 0.113],
        [-0.643, -1.35, -0.433],
    ]
    assert torch.allclose(corrected[:, 6:], torch.tensor(official_new), atol=1e-6)
    loss = bias_stage_loss(logits, targets, 6, alpha, beta, beta_decay=0.0)
    loss.backward()
    assert loss.item() == pytest.approx(2.859761953353882, abs=1e-6)
    assert alpha.grad.item() == pytest.approx(0.28251561522483826, abs=1e-6)
    assert beta.grad.item() == pytest.approx(-0.5126362442970276, abs=1e-6)


def test_weight_aligning_equals_pycil():
    """G-U-N/PyCIL@87cc4110d60765dc3f64af7ef7a693efed8418ff, utils/inc_net.py IncrementalNet.weight_align(3) on a
    9 x 4 classifier: the last 3 rows times gamma = 1.1902655."""
    weights = torch.tensor(
        [
            [-0.6, -1.28, 0.09, -0.67],
            [0.61, -0.73, -0.88, -0.42],
            [0.48, -1.02, 0.18, 0.11],
            [-0.75, 0.24, -0.08, 0.12],
            [0.73, -1.85, -0.03, 1.37],
            [-0.14, -0.32, 0.97, -0.99],
            [0.3, -0.11, 1.0, -0.5],
            [0.99, -0.78, 0.31, 0.21],
            [-0.12, 0.36, -0.31, -1.08],
        ]
    )
    official = [
        [0.3570796847343445, -0.13092920184135437, 1.1902655363082886, -0.5951327681541443],
        [1.1783628463745117, -0.9284070730209351, 0.36898231506347656, 0.24995575845241547],
        [-0.14283186197280884, 0.4284956157207489, -0.36898231506347656, -1.2854868173599243],
    ]
    gamma = aligning_factor(weights[:6], weights[6:])
    assert torch.allclose(weights[6:] * gamma, torch.tensor(official), atol=1e-6)


def test_balanced_softmax_equals_ren_et_al():
    """An existing method against official code it was not compared with before: jiawei-ren/
    BalancedMetaSoftmax-Classification@34a61e432881816c2da14d577d6ed63501288f5f, loss/BalancedSoftmaxLoss.py
    balanced_softmax_loss(labels, logits, sample_per_class, 'mean'), 2 exemplars of each old class, 10 of each new."""
    counts = torch.tensor([2.0] * 6 + [10.0] * 3)
    ours = balanced_softmax_cross_entropy(torch.tensor(LOGITS), torch.tensor(TARGETS), counts)
    assert ours.item() == pytest.approx(2.282510995864868, abs=1e-6)


# ------------------------------------------------------------------ the BiC plugin inside a step


def test_bic_holds_out_a_balanced_set_learns_on_it_and_corrects_scores_and_teacher():
    torch.manual_seed(0)
    model = build_net("tiny", "linear")
    model.head.add_classes(2)
    model.head.add_classes(2)
    engine = small_engine(model, n_classes=4, n_old=2, per_class=10, memory_per_class=10, train_on_exemplars=True)
    plugin = BiasCorrectionLayer(BiasLayerConfig(epochs=3, milestones=[], validation="exemplars"))
    plugin.before_step(engine)
    assert plugin.validation_set is not None and torch.bincount(plugin.validation_set.labels).tolist() == [1, 1, 1, 1]
    assert len(engine.train_set) == 40 - 4  # held out of the training set (floor(10% of 10) per class)
    before = [p.detach().clone() for p in model.parameters()]
    plugin.after_training(engine)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # stage 2 trains alpha and beta only
    alpha, beta = engine.step_record["bic_alpha"], engine.step_record["bic_beta"]
    assert (alpha, beta) != (1.0, 0.0) and engine.step_record["bic_validation_per_class"] == 1
    scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert torch.allclose(
        plugin.adjust_scores(engine, scores),
        torch.tensor([[1.0, 2.0, 3.0 * alpha + beta, 4.0 * alpha + beta]]),
        atol=1e-5,
    )
    # step 2 distils from step 1's model through step 1's layer, on step 1's classes (2-3) only
    from types import SimpleNamespace

    plugin.alphas, plugin.betas = {1: 0.5}, {1: -1.0}
    plugin._teacher_layer = (torch.tensor(0.5), torch.tensor(-1.0))  # what before_step of step 2 sets from them
    view = SimpleNamespace(step=2, step_classes=[[0, 1], [2, 3], [4, 5]])
    teacher = model(torch.zeros(1, 3, 32, 32))
    adjusted = plugin.adjust_previous_output(view, teacher)
    expected = torch.cat([teacher.logits[:, :2], 0.5 * teacher.logits[:, 2:] - 1.0], dim=1)
    assert torch.allclose(adjusted.logits, expected)


# ------------------------------------------------------------------ composing, refusing, running by name

SMALL = [*TINY, "--limit-per-class", "12", "--memory", "4", "--set", "runtime.channels_last=false"]


def run_ok(tmp_path, capsys, *argv):
    out = tmp_path / "run"
    code = main(["run", "--scenario", "synthetic-b6-2", *SMALL, *argv, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads((out / "results.json").read_text())


def test_weight_aligning_composes_with_il_baseline(tmp_path, capsys):
    results = run_ok(tmp_path, capsys, "--strategy", "il-baseline", "--plugin", "weight-aligning")
    assert [("wa_gamma" in s) for s in results["steps"]] == [False, True, True]
    # issue 35 item 2: a correction that changes the model is evaluated before it too
    assert [("classifier_accuracy" in s) for s in results["steps"]] == [False, True, True]


def test_every_correction_reports_the_classifier_before_it(tmp_path, capsys):
    """Weight aligning and balanced finetuning change the model itself, so the step is evaluated before them as
    well; cil report then has the uncorrected classifier as a metric of its own (issue 35 item 2)."""
    results = run_ok(
        tmp_path,
        capsys,
        "--strategy",
        "il-baseline",
        "--plugin",
        "balanced-finetuning",
        "--set",
        "plugins.balanced-finetuning.epochs=2",
    )
    steps = results["steps"]
    assert all({"classifier_accuracy", "classifier_accuracy_new", "classifier_top5"} <= set(s) for s in steps[1:])
    assert main(["report", str(tmp_path / "run"), "--metric", "final_classifier_accuracy"]) == 0
    assert f"{steps[-1]['classifier_accuracy']:.2f}" in capsys.readouterr().out


def test_bic_bias_layer_composes_with_lucir(tmp_path, capsys):
    results = run_ok(
        tmp_path,
        capsys,
        "--strategy",
        "lucir",
        "--plugin",
        "bic-bias-layer",
        "--set",
        "plugins.bic-bias-layer.epochs=2",
    )
    steps = results["steps"]
    assert "bic_alpha" in steps[1] and "classifier_accuracy" in steps[1]  # accuracy before the correction too
    # the pool: one image of every class withheld when it arrived (10% of 4 exemplars, at least 1), not trained on
    assert steps[1]["n_train"] == 2 * (12 - 1) + 6 * 4
    assert steps[1]["bic_validation_origin"] == "pool" and steps[1]["bic_pool_per_class"] == 1


def test_icarl_records_nme_and_classifier_accuracy(tmp_path, capsys):
    results = run_ok(tmp_path, capsys, "--strategy", "icarl")
    assert results["eval"] == "nme"
    assert all({"classifier_accuracy", "classifier_accuracy_new"} <= set(s) for s in results["steps"])
    assert set(results["steps"][1]["final_epoch_loss"]) == {"classification", "distillation"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--strategy", "lucir", "--plugin", "weight-aligning"],
            "model.head cosine normalises them (its logits do not depend on their norms): add it to a strategy with",
        ),
        (
            ["--strategy", "il-baseline", "--plugin", "weight-aligning", "--plugin", "bic-bias-layer"],
            "plugins weight-aligning and bic-bias-layer both correct the bias toward new classes after training",
        ),
        (
            ["--strategy", "podnet", "--plugin", "nme"],
            "plugins balanced-finetuning and nme both correct the bias toward new classes after training",
        ),
        (["--strategy", "bic", "--memory", "0"], "bic-bias-layer learns its correction on a validation set"),
        (["--strategy", "icarl", "--memory", "0"], "plugins.nme nme classifies by the means of the exemplars"),
        (["--strategy", "il-baseline", "--plugin", "nme", "--memory", "0"], "nme classifies by the means"),
        (["--strategy", "icarl", "--memory-budget", "5"], "--memory-budget 5 keeps no exemplar of a class once"),
        (
            ["--strategy", "ss-il", "--set", "data.synthetic_classes=8"],  # synthetic-b6-2 of 8 classes: steps of 1
            "loss separated-softmax: step 1 learns one class; its samples' softmax runs over that one logit",
        ),
        (
            ["--strategy", "bic", "--memory", "1", "--set", "plugins.bic-bias-layer.validation=exemplars"],
            "plugins.bic-bias-layer validation exemplars holds images out of 1 exemplar per class, leaving none",
        ),
        (
            ["--strategy", "bic", "--set", "plugins.bic-bias-layer.milestones=[0,5]"],
            "invalid value for 'plugins.bic-bias-layer.milestones': must be increasing positive epochs",
        ),
        (
            ["--strategy", "eeil", "--set", "plugins.balanced-finetuning.milestones=[20,10]"],
            "invalid value for 'plugins.balanced-finetuning.milestones': must be increasing positive epochs",
        ),
        (
            ["--strategy", "ss-il", "--set", "optim.batch_size=16"],
            "replay_batch_size 32 leaves no new-class sample in a mini-batch of optim.batch_size 16",
        ),
    ],
)
def test_combinations_that_make_no_sense_are_one_line_before_any_data(tmp_path, capsys, argv, message):
    code = main(["run", "--scenario", "synthetic-b6-2", "--limit-per-class", "4", *argv, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ the sources the papers' numbers come from


def test_ss_il_learning_rate_at_every_step_is_the_official_one():
    """hongjoon0805/SS-IL-Official main.py: lr = args.lr / (t + 1) for the 'ssil' trainer, t = 0 the base step."""
    from cil.runs.assemble import build_config

    official = {
        "synthetic-b50-5": [0.1, 0.05, 0.1 / 3, 0.025, 0.02, 0.1 / 6],
        "synthetic-b0-10": [0.1 / (t + 1) for t in range(10)],  # imagenet-b0-10's ten steps of 100 classes
    }
    for scenario, rates in official.items():
        optim = build_config(scenario, "ss-il", {"device": "cpu"}, []).optim
        assert [optim.step_lr(t) for t in range(len(rates))] == pytest.approx(rates, rel=1e-12)
    il = build_config("synthetic-b50-5", "il-baseline", {"device": "cpu"}, []).optim
    assert {il.step_lr(t) for t in range(6)} == {0.1}  # the other methods keep their rate


def test_eeil_distillation_has_the_official_matconvnet_gradient():
    """vl_nnsoftmaxdiff.m, mode MI, origstyle multiclass, temperature T: the targets c = p^(1/T) renormalised
    (p the old network's softmax, i.e. softmax(z_hat / T)), loss sum_b [log sum exp(x_safe) - sum c x_safe] with
    x_safe = (x - max x) / T, derivative (softmax(x / T) - c) / T per sample (no T^2), summed over the batch as
    its CE loss is; cil's batch mean times B is the same."""
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.3], [1.5, 0.2, -0.7, 0.0], [0.0, 0.0, 1.0, -2.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, 0.0, -1.0, 2.0], [0.3, 0.3, 0.9, -0.4], [2.0, -1.0, 0.5, 0.5]])
    t = 2.0
    loss = task_wise_distillation(logits, teacher, [[0, 1], [2, 3]], t, squared_temperature=False)
    (loss * len(logits)).backward()
    expected = torch.zeros_like(teacher)
    for lo, hi in [(0, 2), (2, 4)]:
        p = F.softmax(teacher[:, lo:hi], dim=1)  # what eval_softmax gives the distillation layer (T = 1)
        c = p ** (1 / t) / (p ** (1 / t)).sum(1, keepdim=True)
        expected[:, lo:hi] = (F.softmax(logits.detach()[:, lo:hi] / t, dim=1) - c) / t
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_eeil_finetuning_distils_every_step_from_the_model_before_it():
    """EEIL's code keeps every step's distillation loss during the balanced finetuning (getIncBatchDist feeds all
    of them, recomputed by eval_softmax on the network after its training): one task-wise term over the old
    steps and the new one, no T^2; SS-IL's eeil.py distils the new classes only, with T^2."""
    from types import SimpleNamespace

    from cil.strategies.balanced_finetuning import BalancedFinetuning, BalancedFinetuningConfig

    from cil.models.net import NetOutput

    logits = torch.tensor([[0.5, -1.0, 2.0, 0.3, 1.0, 0.0], [1.5, 0.2, -0.7, 0.0, -1.0, 2.0]])
    teacher = torch.tensor([[1.0, 0.0, -1.0, 2.0, 0.0, 0.0], [0.3, 0.3, 0.9, -0.4, 1.0, -1.0]])
    targets = torch.tensor([4, 1])
    engine = SimpleNamespace(
        n_old=4, step=2, step_classes=[[0, 1], [2, 3], [4, 5]], classification_loss=lambda o, y: torch.tensor(0.0)
    )

    def terms(**options):
        config = BalancedFinetuningConfig(distill_new=True, **options)
        loss = BalancedFinetuning(config).stage_loss(engine)
        out = lambda z: NetOutput(z, torch.zeros(2, 1), [])  # noqa: E731
        return loss(out(logits), targets, out(teacher))["new_distillation"].item()

    steps = [[0, 1], [2, 3], [4, 5]]
    eeil = task_wise_distillation(logits, teacher, steps, 2.0, squared_temperature=False).item()
    assert terms(distill_old_steps=True, squared_temperature=False) == pytest.approx(eeil, rel=1e-6)
    assert terms() == pytest.approx(task_wise_distillation(logits, teacher, [[4, 5]], 2.0).item(), rel=1e-6)


def test_augmented_copies_draw_every_image_as_often_in_one_shuffled_epoch():
    from cil.strategies.augmented_copies import repeated_positions

    positions = repeated_positions(7, 12, torch.Generator().manual_seed(0))
    assert len(positions) == 84 and torch.bincount(positions).tolist() == [12] * 7
    assert not torch.equal(positions[:7], torch.arange(7))  # one shuffle over all the copies


def test_icarl_loss_has_the_official_reduction_over_every_output():
    """iCaRL's Theano code: T.mean(binary_crossentropy(sigmoid(z), targets)) over the B x 100 outputs of a network
    built with all classes; on a seen output its gradient is (sigmoid(z) - t) / (B x 100), whatever N_t."""
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, -1.0, 3.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
    targets = torch.tensor([2, 0])
    (icarl_distillation(logits, teacher, 100) + icarl_classification(logits, targets, 2, 100)).backward()
    goal = torch.cat([torch.sigmoid(teacher), F.one_hot(targets, 3)[:, 2:].float()], dim=1)
    assert torch.allclose(logits.grad, (torch.sigmoid(logits.detach()) - goal) / (2 * 100), atol=1e-7)
    seen = icarl_distillation(logits, teacher) + icarl_classification(logits, targets, 2)  # mean over N_t = 3
    total = icarl_distillation(logits, teacher, 100) + icarl_classification(logits, targets, 2, 100)
    assert seen.item() == pytest.approx(total.item() * 100 / 3, rel=1e-6)


def test_weight_decay_on_weights_only_leaves_biases_and_batchnorm_alone():
    from cil.training.weight_decay import without_decay_on_biases_and_norms

    model = build_net("tiny", "linear")
    model.head.add_classes(3)
    groups = without_decay_on_biases_and_norms([{"params": list(model.parameters()), "lr": 0.5}])
    decayed, kept = groups
    assert all(p.ndim > 1 for p in decayed["params"]) and "weight_decay" not in decayed
    assert kept["weight_decay"] == 0.0 and all(p.ndim == 1 for p in kept["params"])
    assert decayed["lr"] == kept["lr"] == 0.5
    assert len(decayed["params"]) + len(kept["params"]) == len(list(model.parameters()))
    bn = model.backbone.modules()
    assert any(isinstance(m, torch.nn.BatchNorm2d) and m.weight in [*kept["params"]] for m in bn)


def test_bic_pool_is_never_trained_on_nor_remembered(tmp_path):
    """BiC's code splits the validation images off every class before training; over a whole run they are in no
    training set of any epoch and never exemplars, and each step validates on the first v_t of them."""
    from avalanche.core import SupervisedPlugin

    from cil.runs.assemble import build_config
    from cil.runs.run import run
    from tests.helpers import quiet

    class Spy(SupervisedPlugin):
        def __init__(self):
            super().__init__()
            self.trained: set[int] = set()
            self.remembered: set[int] = set()
            self.pool: set[int] = set()
            self.validation_sizes: list[int] = []

        def before_training_epoch(self, strategy, **kwargs):
            self.trained |= set(strategy.train_set.indices.tolist())

        def after_training_exp(self, strategy, **kwargs):
            self.remembered |= set(strategy.memory_set.indices.tolist())
            bic = next(c for c in strategy.components if isinstance(c, BiasCorrectionLayer))
            self.pool = set(bic.pool.indices.tolist())
            if bic.validation_set is not None:
                self.validation_sizes.append(len(bic.validation_set))

    flags = {"epochs": 1, "device": "cpu", "progress": False, "data": {"limit_per_class": 12}}
    flags["memory"] = {"per_class": 10}
    sets = ["model.backbone=resnet8", "optim.batch_size=16", "data.synthetic_classes=10"]
    sets.append("plugins.bic-bias-layer.epochs=1")
    spy = Spy()
    run(build_config("synthetic-b6-2", "bic", flags, sets), out=tmp_path / "bic", extra_plugins=[spy], log=quiet)
    assert len(spy.pool) == 10  # one image (10% of 10 exemplars) of each of the 10 classes
    assert not spy.pool & spy.trained and not spy.pool & spy.remembered
    assert spy.validation_sizes == [8, 10]  # one pooled image of every seen class at steps 1 and 2
    steps = json.loads((tmp_path / "bic" / "results.json").read_text())["steps"]
    assert [s.get("bic_validation_origin") for s in steps] == [None, "pool", "pool"]


def test_each_step_records_the_learning_rate_and_weight_decay_it_started_with(tmp_path, capsys):
    results = run_ok(tmp_path, capsys, "--strategy", "ss-il", "--set", "optim.batch_size=40")
    assert [s["lr"] for s in results["steps"]] == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert {s["weight_decay"] for s in results["steps"]} == {1e-4}


def test_bic_validation_count_rounds_down_as_the_official_code():
    """imagenet_main.py: nb_val_itera = floor(0.1 x 20000 / (100 itera)) validation images per class at step
    itera of ImageNet-1000 (fixed memory of 20,000); the pool holds the first step's 20; 2 with 20 per class."""
    from types import SimpleNamespace

    plugin = BiasCorrectionLayer(BiasLayerConfig())

    def engine(n_old: int, budget: int | None, per_class: int = 20, base: int = 100):
        quota = (lambda n: budget // n) if budget else (lambda n: per_class)
        return SimpleNamespace(
            n_old=n_old,
            step_classes=[list(range(base))],
            memory_per_class=quota,
            train_class_counts=torch.full((n_old + 100,), quota(n_old)),
        )

    official = [int(math.floor(0.1 * 20000 / (100 * itera))) for itera in range(1, 10)]
    assert official == [20, 10, 6, 5, 4, 3, 2, 2, 2]
    assert [plugin.validation_per_class(engine(100 * t, 20000)) for t in range(1, 10)] == official
    assert plugin.pool_per_class(engine(100, 20000)) == 20
    assert plugin.validation_per_class(engine(50, None)) == plugin.pool_per_class(engine(50, None, base=50)) == 2


def test_one_class_steps_are_said_once_where_a_distillation_is_constant(tmp_path, capsys):
    """Issue 35 item 3: a softmax over one logit is constant, so EEIL's task-wise distillation of a one-class step,
    and its finetuning's distillation of one new class, are 0: the run says so once, before training."""
    code = main(
        ["run", "--scenario", "synthetic-b5-5", "--strategy", "eeil", *SMALL, "--set", "data.synthetic_classes=10"]
        + ["--set", "plugins.balanced-finetuning.epochs=1", "--set", "plugins.augmented-copies.copies=1"]
        + ["--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: method task-wise-kd: steps 1, 2, 3, 4 learn one class; a softmax over one logit is constant, so their "
        "distillation is 0 and only the classification loss keeps that class (docs/strategies.md)",
        "note: plugins.balanced-finetuning balanced-finetuning: the distillation of a step's new classes is 0 where "
        "the step learns one class (steps 1, 2, 3, 4, 5): a softmax over one logit is constant",
    ]
