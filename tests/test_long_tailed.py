"""Long-tailed plugins: GALA (Zhang et al.), GBG (GBG paper), MFW (Ye et al.), and the MGDA min-norm solver."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cil.strategies.gala import gala_adjustment, rebalance_predictions
from cil.strategies.gbg import class_balanced_weights, cosine_similarity_matrix, normalized_cut_groups
from cil.strategies.mfw import MajorFeatureWeakening, MFWConfig, mix_features, mixing_weights
from cil.strategies.min_norm import min_norm_weights

from cil.cli import main

# ------------------------------------------------------------------------------------------------ GALA


def test_gala_adjusted_logits_from_given_statistics():
    stats = torch.tensor([[4.0, 1.0, 3.0], [2.0, 1.0, 1.0], [1.0, 2.0, 1.0]])
    targets = torch.tensor([0, 2])
    eps = 1e-3
    theta = torch.tensor([4.0, 1.0, 1.0]) / 2.0  # diagonal over its mean
    phi = stats / (10.0 / 6.0)  # off-diagonal mean: (1 + 3 + 2 + 1 + 1 + 2) / 6
    got = gala_adjustment(stats, targets, 1.0, 0.5, eps)
    for row, y in enumerate(targets.tolist()):
        for k in range(3):
            expected = math.log(theta[k] + eps) - (0.0 if k == y else 0.5 * math.log(phi[y, k] + eps))
            assert float(got[row, k]) == pytest.approx(expected, rel=1e-6)
    only_negative = gala_adjustment(stats, targets, 0.0, 1.0, eps)
    assert float(only_negative[0, 0]) == 0.0 and float(only_negative[1, 2]) == 0.0


def test_gala_statistics_do_not_drift_with_scale():
    stats = torch.rand(4, 4) + 0.1
    targets = torch.tensor([0, 1, 2, 3])
    assert torch.allclose(
        gala_adjustment(stats, targets, 1, 1, 1e-3), gala_adjustment(100 * stats, targets, 1, 1, 1e-3), atol=1e-5
    )


def test_gala_accumulates_the_classification_gradient_of_real_batches_only():
    from cil.strategies.gala import GALA, GALAConfig

    plugin = GALA(GALAConfig(warmup_batches=0))
    plugin.stats = torch.zeros(3, 3)
    logits = torch.zeros(2, 3, requires_grad=True)
    targets = torch.tensor([0, 2])
    adjusted = plugin.adjust_logits(None, logits, targets, record=True)
    torch.nn.functional.cross_entropy(adjusted, targets, reduction="sum").backward()
    # |p - onehot| with p = 1/3: 2/3 on the true class, 1/3 elsewhere, per sample
    expected = torch.tensor([[2 / 3, 1 / 3, 1 / 3], [0, 0, 0], [1 / 3, 1 / 3, 2 / 3]])
    assert torch.allclose(plugin.stats, expected)
    before = plugin.stats.clone()
    virtual = plugin.adjust_logits(None, logits, targets, record=False)
    torch.nn.functional.cross_entropy(virtual, targets).backward()
    assert torch.equal(plugin.stats, before)


def test_gala_prediction_rebalancing():
    scores = torch.log(torch.tensor([[0.8, 0.2], [0.6, 0.4], [0.9, 0.1]]))
    balanced = rebalance_predictions(scores, tau=1.0)
    columns = torch.tensor([2.3, 0.7])
    assert torch.allclose(balanced, scores.softmax(1) / columns)
    assert balanced.argmax(1).tolist() == [0, 1, 0]  # the head class 0 no longer wins the close call
    assert torch.allclose(rebalance_predictions(scores, tau=0.0), scores.softmax(1))


# ------------------------------------------------------------------------------------------------ GBG


def test_min_norm_two_gradients_closed_form():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    gram = torch.stack([g1, g2]) @ torch.stack([g1, g2]).t()
    a = min_norm_weights(gram)
    # min ||a g1 + (1 - a) g2||^2: a = g2.(g2 - g1) / ||g1 - g2||^2 = 4 / 5
    assert a.tolist() == pytest.approx([0.8, 0.2])
    opposite = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)  # g2 = -g1: the origin is in the hull
    assert float(min_norm_weights(opposite) @ opposite @ min_norm_weights(opposite)) == pytest.approx(0.0)


@pytest.mark.parametrize("n", [3, 4, 6])
def test_min_norm_matches_a_qp_solver(n):
    qpsolvers = pytest.importorskip("qpsolvers")
    torch.manual_seed(n)
    g = torch.randn(n, 40, dtype=torch.float64)
    gram = g @ g.t()
    a = min_norm_weights(gram)
    x = qpsolvers.solve_qp(
        2 * gram.numpy(), np.zeros(n), A=np.ones((1, n)), b=np.ones(1), lb=np.zeros(n), solver="quadprog"
    )
    assert float(a.sum()) == pytest.approx(1.0) and (a >= 0).all()
    assert float(a @ gram @ a) == pytest.approx(float(x @ gram.numpy() @ x), rel=1e-6)
    assert a.numpy() == pytest.approx(x, abs=1e-4)


def test_normalized_cut_separates_two_clusters_of_gradients():
    torch.manual_seed(0)
    a, b = torch.randn(50), torch.randn(50)
    gradients = torch.stack(
        [a + 0.1 * torch.randn(50) for _ in range(5)] + [b + 0.1 * torch.randn(50) for _ in range(4)]
    )
    groups = normalized_cut_groups(cosine_similarity_matrix(gradients), 2, seed=0)
    assert len(set(groups[:5])) == 1 and len(set(groups[5:])) == 1 and groups[0] != groups[5]
    assert list(normalized_cut_groups(cosine_similarity_matrix(gradients), 20, seed=0)) == list(range(9))


def test_class_balanced_weights():
    w = class_balanced_weights(torch.tensor([0, 1, 100]), beta=0.9)
    assert w.tolist() == pytest.approx([0.0, 1.0, 0.1 / (1 - 0.9**100)])


# ------------------------------------------------------------------------------------------------ MFW


def test_mfw_weights_eq12_by_hand():
    counts = torch.tensor([20.0] * 4 + [500.0] * 2)
    s = mixing_weights(counts, beta=0.01)
    mu = math.exp((4 * math.log(20) + 2 * math.log(500)) / 6)
    gamma = float(counts.std(unbiased=False))
    assert float(s[0]) == pytest.approx(0.5 / (1 + math.exp(-(20 - mu) / (0.01 * gamma))), abs=1e-6)
    assert float(s[-1]) == pytest.approx(0.5, abs=1e-6) and float(s[0]) < 1e-6  # major weakened, minor not
    assert mixing_weights(torch.full((5,), 500.0), beta=0.01).tolist() == [0.0] * 5  # balanced: no mixing
    soft = mixing_weights(counts, beta=2.0)
    assert 0 < float(soft[0]) < float(soft[-1]) < 0.5


def test_mfw_mixes_features_keeps_labels_and_is_off_at_evaluation():
    features = torch.arange(8.0).view(4, 2)
    lam = torch.tensor([0.5, 0.0, 0.25, 0.0])
    permutation = torch.tensor([1, 0, 3, 2])
    mixed = mix_features(features, lam, permutation)
    assert mixed[0].tolist() == [1.0, 2.0] and mixed[1].tolist() == [2.0, 3.0]
    assert mixed[2].tolist() == pytest.approx([0.75 * 4 + 0.25 * 6, 0.75 * 5 + 0.25 * 7])

    plugin = MajorFeatureWeakening(MFWConfig())
    stage = torch.nn.Identity()
    plugin._lam, plugin._permutation = lam, permutation
    stage.train()
    assert torch.equal(plugin._mix(stage, (features,), features), mixed)
    stage.eval()
    assert torch.equal(plugin._mix(stage, (features,), features), features)


# ------------------------------------------------------------------------------------------------ end to end

TINY_SETS = ["model.backbone=tiny", "data.synthetic_classes=10", "data.test_limit_per_class=5", "optim.batch_size=16"]
TINY = [
    "--scenario",
    "synthetic-b6-2",
    "--epochs",
    "1",
    "--limit-per-class",
    "10",
    "--device",
    "cpu",
    "--no-progress",
    "--no-tensorboard",
    *sum((["--set", s] for s in TINY_SETS), []),
]


@pytest.mark.parametrize("plugin", ["gala", "gbg", "mfw", "memory-oversampling", "class-oversampling"])
@pytest.mark.parametrize("strategy", ["il-baseline", "podnet"])
def test_plugins_run_with_il_baseline_and_podnet(tmp_path, capsys, plugin, strategy):
    out = tmp_path / "run"
    assert main(["run", "--strategy", strategy, "--plugin", plugin, *TINY, "--out", str(out)]) == 0, (
        capsys.readouterr().err
    )
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "complete"
    assert plugin in [p["name"] for p in results["config"]["plugins"]]
    if plugin == "gbg":
        assert all(
            sum(s["gbg_group_sizes"]) == sum(len(t["labels"]) for t in results["steps"][: s["step"] + 1])
            for s in results["steps"]
        )
        assert all(sum(s["gbg_mean_weights"]) == pytest.approx(1.0, abs=1e-3) for s in results["steps"])


@pytest.mark.parametrize(
    "strategy",
    [
        "il-baseline-loss-rescaling",
        "il-baseline-separated-softmax",
        "il-baseline-balanced-finetuning",
        "il-baseline-gala",
        "il-baseline-gbg",
        "il-baseline-mfw",
    ],
)
def test_named_table6_strategies_run(tmp_path, capsys, strategy):
    assert main(["run", "--strategy", strategy, *TINY, "--out", str(tmp_path / "run")]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("loss", ["loss-rescaling", "separated-softmax"])
def test_table6_losses_replace_podnets_loss(tmp_path, capsys, loss):
    out = tmp_path / "run"
    assert main(["run", "--strategy", "podnet", "--set", f"loss.name={loss}", *TINY, "--out", str(out)]) == 0, (
        capsys.readouterr().err
    )
    assert json.loads((out / "results.json").read_text())["config"]["loss"] == {"name": loss}


def test_mfw_leaves_the_labels_alone(tmp_path):
    from cil.runs.assemble import build_config
    from cil.runs.run import run
    from tests.helpers import quiet

    seen = []

    from avalanche.core import SupervisedPlugin

    class RecordLabels(SupervisedPlugin):
        def before_forward(self, strategy, **kwargs):
            seen.append(strategy.mb_y.clone())

        def after_forward(self, strategy, **kwargs):
            assert torch.equal(seen[-1], strategy.mb_y)

    cfg = build_config(
        "synthetic-b6-2",
        "il-baseline-mfw",
        {"epochs": 1, "device": "cpu", "progress": False, "logging": {"loggers": []}, "data": {"limit_per_class": 10}},
        TINY_SETS,
    )
    run(cfg, out=tmp_path / "run", extra_plugins=[RecordLabels()], log=quiet)
    assert seen


def test_gala_rebalancing_changes_the_evaluation(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            ["run", "--strategy", "il-baseline-gala", *TINY, "--set", "plugins.gala.rebalance=true", "--out", str(out)]
        )
        == 0
    ), capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["eval"] == "gala-rebalanced"


def test_two_batch_samplers_are_one_clear_error(capsys):
    assert main(["run", "--strategy", "il-baseline-memory-oversampling", "--plugin", "class-oversampling", *TINY]) == 2
    assert "both choose the mini-batches" in capsys.readouterr().err


def same_partition(a, b) -> bool:
    """Whether two labelings split the items the same way (up to renaming the groups)."""
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


@pytest.mark.parametrize("case", range(12))
def test_normalized_cut_recovers_generated_groups_of_class_gradients(case):
    """Fixed features: G groups of class gradients around G random directions; scikit-learn's spectral
    clustering (which GBG now uses) returns exactly those groups."""
    g = torch.Generator().manual_seed(case)
    n_groups = 2 + case % 4
    labels = torch.arange(4 * n_groups + case) % n_groups
    gradients = torch.randn(n_groups, 64, generator=g)[labels] + 0.3 * torch.randn(len(labels), 64, generator=g)
    groups = normalized_cut_groups(cosine_similarity_matrix(gradients), n_groups, seed=case)
    assert same_partition(groups.tolist(), labels.tolist())


# The authors' GALA on fixed inputs: DotProduct_Classifier.forward (models/DotProductClassifier.py) and
# model.collect_grad (run_networks.py) of github lt-project-repository/lt-peoject, commit
# 1eea15d5af24aa508f6dbccaaf75f01be876f0de, run outside this repository: lamda_1 1.2, lamda_2 0.9, three batches
# of 6 features (3-d) through a 4-class linear layer, each batch's cross-entropy gradient collected before the
# next. Values: the layer, the batches, and the adjusted training logits the authors' code computed.
GALA_WEIGHT = [
    [-0.0043225, 0.3097158, -0.4751853],
    [-0.4248946, -0.222369, 0.1548207],
    [-0.0114391, 0.4577749, -0.0512364],
    [0.1527741, -0.1744828, -0.1134871],
]
GALA_BIAS = [-0.5515707, -0.3823687, -0.2379971, 0.0213871]
GALA_BATCHES = [
    (
        [
            [-1.5255959, -0.7502318, 0.6995424],
            [0.1990816, 0.8656924, 0.2444039],
            [-0.6629114, 0.8073083, 0.4391416],
            [1.1712008, -2.2455578, -1.446458],
            [0.0611553, -0.6177444, -0.7980698],
            [-0.1316232, -0.7984398, 0.3357305],
        ],
        [1, 1, 3, 2, 0, 2],
        [
            [-3.182074, -1.531346, -2.672152, -2.232498],
            [-2.472777, -2.693949, -1.928832, -2.199311],
            [-2.579669, -2.284561, -1.955676, -2.342914],
            [-2.637109, -2.676932, -3.27757, -1.316045],
            [-2.436256, -2.466871, -2.552922, -1.84324],
            [-3.030153, -2.169243, -2.691526, -1.969836],
        ],
    ),
    (
        [
            [-1.8821425, -0.776545, -1.8033639],
            [-1.3083209, 0.4532546, 1.1421611],
            [0.2486107, -1.7754008, -0.0255025],
            [-1.0233306, 0.1098855, -0.6463385],
            [0.4285423, 1.4760778, -1.7868679],
            [1.6103176, -0.7039567, -0.1852658],
        ],
        [0, 0, 1, 3, 1, 2],
        [
            [-0.534562, 0.336547, -0.143586, -0.559898],
            [-1.555824, 0.275293, 0.261904, -1.021091],
            [-2.172902, -0.546389, -1.191257, -0.73681],
            [-0.793776, -0.026583, 0.212852, -0.69491],
            [-0.329671, -1.618565, 0.385376, -1.076756],
            [-2.003711, -1.620644, -0.940851, -0.930277],
        ],
    ),
    (
        [
            [-0.5064866, 0.0997754, 0.8165339],
            [-0.9135236, 1.3851457, -0.8138462],
            [-0.9275765, 1.1119633, 0.6155449],
            [0.193822, -0.1034421, -0.1512169],
            [-2.102083, -0.6200219, -1.478231],
            [-1.1334175, -0.1010348, 0.3433537],
        ],
        [3, 0, 2, 2, 2, 0],
        [
            [-0.779178, 0.342991, 0.151012, -0.44278],
            [0.092399, -0.325319, 0.524598, -0.847228],
            [-0.860428, -0.226354, 0.137413, -1.152979],
            [-0.877351, -0.551272, -0.392511, -0.682573],
            [-0.396843, 0.333667, -0.534733, -0.792595],
            [-0.916829, 0.277751, -0.212514, -0.752836],
        ],
    ),
]


def test_gala_long_tailed_profile_is_the_authors_code_on_fixed_inputs():
    from types import SimpleNamespace

    from cil.strategies.gala import GALA

    from cil.runs.assemble import build_config

    config = build_config("synthetic-b50-5", "il-baseline-gala", {}, ["data.imbalance=exp:100"]).plugins[0]
    assert (config.lambda_positive, config.lambda_negative, config.statistics) == (1.2, 0.9, "cumulative")
    gala = GALA(config)
    engine = SimpleNamespace(n_seen=4, device=torch.device("cpu"))
    gala.before_step(engine)
    weight, bias = torch.tensor(GALA_WEIGHT), torch.tensor(GALA_BIAS)
    for x, y, expected in GALA_BATCHES:
        logits = (torch.tensor(x) @ weight.T + bias).requires_grad_(True)
        targets = torch.tensor(y)
        adjusted = gala.adjust_logits(engine, logits, targets, record=True)
        torch.testing.assert_close(adjusted.detach(), torch.tensor(expected), atol=1e-5, rtol=0)
        F.cross_entropy(adjusted, targets).backward()
        gala.after_batch(engine)


def test_gbg_normalises_group_gradients_as_sener_and_koltuns_code():
    from cil.strategies.gbg import gradient_normalizers, grouping_epoch

    gradients = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    losses = torch.tensor([2.0, 0.5])
    assert gradient_normalizers(gradients, losses, "l2").flatten().tolist() == [5.0, 1.0]
    assert gradient_normalizers(gradients, losses, "loss").flatten().tolist() == [2.0, 0.5]
    assert gradient_normalizers(gradients, losses, "loss+").flatten().tolist() == [10.0, 0.5]
    assert gradient_normalizers(gradients, losses, "none").flatten().tolist() == [1.0, 1.0]
    assert grouping_epoch(0.0, 30) == 0 and grouping_epoch(0.1, 30) == 3


def test_gbg_update_is_the_raw_gradients_weighted_by_the_normalised_min_norm_solution():
    """Two conflicting group gradients of different sizes: the min-norm point of the raw ones is tiny (what cil
    stepped along before: the collapse), the update of the normalised weights is not."""
    from cil.strategies.gbg import gradient_normalizers

    g = torch.tensor([[1.0, 0.0], [-10.0, 0.1]])
    raw = min_norm_weights(g @ g.t()).float() @ g
    normalized = g / gradient_normalizers(g, torch.tensor([1.0, 1.0]), "l2")
    update = min_norm_weights(normalized @ normalized.t()).float() @ g
    assert raw.norm() < 0.02 and update.norm() > 4.0


def test_gbg_keeps_learning_on_long_tailed_data(tmp_path):
    """Issue 37's collapse, end to end: GBG's update along the raw min-norm point (``normalization: none``) is near
    zero once the groups conflict, and the network stops learning early (18.5 %, 3 classes ever predicted here);
    with the normalised solve it learns as well as the data allows (35.5 %, 6 classes) on the same 6 epochs."""
    from cil.runs.assemble import build_config
    from cil.runs.run import run
    from tests.helpers import quiet

    def trained(normalization: str) -> tuple[float, int]:
        sets = [
            "model.backbone=resnet8",
            "optim.batch_size=32",
            "data.synthetic_classes=10",
            "data.test_limit_per_class=20",
            f"plugins.gbg.normalization={normalization}",
        ]
        flags = {"epochs": 6, "progress": False, "logging": {"loggers": []}}
        flags["data"] = {"limit_per_class": 100, "imbalance": "exp:50"}
        out = tmp_path / normalization
        results = run(build_config("synthetic-b10-0", "il-baseline-gbg", flags, sets), out=out, log=quiet)
        confusion = np.load(out / "confusion" / "step_00.npy")
        return results["final_accuracy"], int((confusion.sum(axis=0) > 0).sum())

    accuracy, predicted = trained("loss+")
    stalled_accuracy, stalled_predicted = trained("none")
    assert predicted >= 5 and accuracy >= 30.0
    assert accuracy > stalled_accuracy + 10.0 and predicted > stalled_predicted
