"""Imbalanced training sets (cil/config/imbalance.py, cil/data/imbalance.py): the counts and kept images of the
long-tailed papers' constructions, many/medium/few metrics, DRW's weights, the warm-up schedule, image lists,
named profiles, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cil.cli import main
from cil.config.imbalance import ImbalanceProfile
from cil.data.imbalance import available_counts, imbalanced_split, indices_digest, kept_indices
from cil.runs.assemble import build_config

# Outputs of the official constructions, run outside this repository on label arrays of CIFAR's sizes
# ("blocks": class c's images at c*n .. (c+1)*n-1; "shuffled": np.random.RandomState(7).permutation of
# np.tile(arange(C), n)): LDAM-DRW's IMBALANCECIFAR10/100.get_img_num_per_cls + gen_imbalanced_data after
# np.random.seed(0) (github kaidic/LDAM-DRW, imbalance_cifar.py, commit 2536330f2afdaa65618323cb5a5850efccce762a),
# and Long-Tailed-CIL's IMBALANCECIFAR100 (github xialeiliu/Long-Tailed-CIL, src/datasets/data_loader.py, commit
# 7db63177de101071b5354f689ec71e0dbe0416f2), which gives the same counts and images for CIFAR-100. Values:
# (images kept, first 24 hex digits of the sha256 of the sorted kept indices as int64).
OFFICIAL = {
    "cifar10-exp-10-blocks": (20431, "3522a3be090386850a6e21e0"),
    "cifar10-exp-10-shuffled": (20431, "56c5a7f221be05477c73caec"),
    "cifar10-exp-50-blocks": (13996, "cde63cee87dc4c013a26b903"),
    "cifar10-exp-50-shuffled": (13996, "eca0b221387ff86bb6d94a08"),
    "cifar10-exp-100-blocks": (12406, "b582b3a43431cddf2c96fad1"),
    "cifar10-exp-100-shuffled": (12406, "560a271ddfeeb66f4a369448"),
    "cifar10-exp-200-blocks": (11203, "e226731ad3bf9340b05df667"),
    "cifar10-exp-200-shuffled": (11203, "e503372e99d3d2c0a088e002"),
    "cifar10-step-10-blocks": (27500, "7fad0f98cb508c3aad0ec04f"),
    "cifar10-step-100-shuffled": (25250, "ee0a504b59559e4157fa69ee"),
    "cifar10-step-200-blocks": (25125, "4d5a82aa26ed4320215058ad"),
    "cifar100-exp-10-blocks": (19573, "1c44f46a86aae7f4db317300"),
    "cifar100-exp-50-shuffled": (12608, "5c7338fc100529065ff8e68c"),
    "cifar100-exp-100-blocks": (10847, "ba66b1fd8f540fe3b3f5c92b"),
    "cifar100-exp-100-shuffled": (10847, "f7b662b9312a4a245f537812"),
    "cifar100-exp-200-blocks": (9502, "e746236ee88daaf9b13322cb"),
    "cifar100-step-10-shuffled": (27500, "0757c4916d03c206ff786b90"),
    "cifar100-step-100-blocks": (25250, "74c5776e5a74893699648961"),
    "cifar100-step-200-shuffled": (25100, "f81df76c4c976948396a7b8c"),
}


def labels(n_classes: int, per_class: int, layout: str) -> np.ndarray:
    if layout == "blocks":
        return np.repeat(np.arange(n_classes), per_class)
    return np.random.RandomState(7).permutation(np.tile(np.arange(n_classes), per_class))


@pytest.mark.parametrize("case", sorted(OFFICIAL))
def test_kept_images_are_the_official_constructions(case):
    dataset, kind, factor, layout = case.split("-")
    n_classes, per_class = (10, 5000) if dataset == "cifar10" else (100, 500)
    targets = labels(n_classes, per_class, layout)
    profile = ImbalanceProfile.parse(f"{kind}:{factor}:shuffled")  # counts by class id, as those codes assign them
    order = list(np.random.RandomState(1993).permutation(n_classes))  # irrelevant to a shuffled assignment
    split = imbalanced_split(profile, targets, n_classes, order, seed=0)
    total, digest = OFFICIAL[case]
    assert sum(split.counts) == len(split.indices) == total
    assert indices_digest(split.indices)[:24] == digest


def test_the_totals_the_papers_state():
    for n_classes, per_class, total in ((100, 500, 10847), (10, 5000, 12406)):
        assert sum(ImbalanceProfile.parse("exp:100").counts_by_rank(n_classes, per_class)) == total
    synthetic = build_config("synthetic-b100-0", "il-baseline", {}, ["data.imbalance=exp:100"])
    from cil.data import DATASETS, planned_train_counts, scenario_plan

    plan = scenario_plan("synthetic-b100-0", synthetic.data, 1993)
    assert sum(planned_train_counts(DATASETS["synthetic"], synthetic.data, plan)) == 10847


def test_ordered_counts_follow_the_class_order_and_shuffled_ones_the_class_ids():
    order = [3, 0, 2, 1]
    exp = ImbalanceProfile.parse("exp:8")
    assert exp.counts_by_rank(4, 80) == [80, 40, 20, 10]  # int(80 * (1/8) ** (r / 3))
    assert exp.class_counts([80] * 4, order) == [40, 10, 20, 80]  # class 3 is learned first: the head
    shuffled = ImbalanceProfile.parse("exp:8:shuffled")
    assert shuffled.class_counts([80] * 4, order) == [80, 40, 20, 10]  # class 0 the head, wherever it comes
    step = ImbalanceProfile.parse("step:10:minor=0.25")
    assert step.counts_by_rank(4, 80) == [80, 80, 80, 8] and str(step) == "step:10:minor=0.25:ordered"
    assert ImbalanceProfile.parse("step:10").counts_by_rank(4, 80) == [80, 80, 8, 8]
    assert exp.class_counts([80, 5, 80, 80], order) == [40, 5, 20, 80]  # fewer images than the target: all kept


def test_kept_images_are_nested_prefixes_of_one_seeded_shuffle():
    targets = np.repeat(np.arange(3), 10)
    few, more = kept_indices(targets, [2, 2, 2], seed=0), kept_indices(targets, [5, 5, 5], seed=0)
    assert set(few) <= set(more) and available_counts(targets[more], 3) == [5, 5, 5]
    assert not np.array_equal(kept_indices(targets, [5, 5, 5], seed=1), more)


@pytest.mark.parametrize(
    "spelling, message",
    [
        ("exp:0.5", "finite number >= 1"),
        ("exp:inf", "finite number >= 1"),
        ("exp", "expected KIND:FACTOR"),
        ("linear:10", "KIND is exp or step"),
        ("exp:ten", "FACTOR must be a number"),
        ("exp:10:sorted", "unknown option 'sorted'"),
        ("step:10:minor=0", "strictly between 0 and 1"),
        ("exp:10:minor=0.3", "unknown option 'minor=0.3'"),
    ],
)
def test_bad_profiles_are_one_line(spelling, message, capsys):
    assert main(["describe", "--scenario", "cifar10-b10-0", "--imbalance", spelling]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("cil: error:")


def test_a_profile_that_leaves_a_class_empty_is_refused_before_loading(capsys):
    argv = ["run", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--imbalance", "exp:200"]
    assert main([*argv, "--limit-per-class", "50", "--out", "/nonexistent/never"]) == 2
    assert "leaves 26 class(es) without a training image" in capsys.readouterr().err
    assert main(["describe", "--scenario", "cifar10-b10-0", "--imbalance", "step:10:minor=0.05"]) == 2
    assert "gives 0 minor classes" in capsys.readouterr().err


def test_describe_counts_every_step_without_loading_images(capsys):
    assert main(["describe", "--scenario", "cifar100-b50-5", "--imbalance", "exp:100", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["imbalance"] == "exp:100:ordered"
    assert [s["n_train"] for s in info["steps"]] == [9901, 394, 247, 152, 95, 58]
    assert info["steps"][0]["train_counts"][:3] == [500, 477, 455] and info["steps"][-1]["train_counts"][-1] == 5
    assert main(["describe", "--scenario", "cifar100-b50-5", "--imbalance", "exp:100:shuffled"]) == 0
    out = capsys.readouterr().out
    assert "training images: 10847 (exp:100:shuffled" in out and "base 0: labels 0-49, 5244 images" in out


# ------------------------------------------------------------------------------------------------ metrics


def test_many_medium_few_on_a_hand_made_confusion():
    from cil.runs.metrics import shot_groups, step_metrics

    counts = [500, 150, 60, 20, 19, 3]  # many: >100; medium: 20..100; few: <20
    shots = shot_groups(counts)
    assert shots == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
    targets = np.repeat(np.arange(6), 2)
    predicted = np.array([0, 0, 1, 0, 2, 2, 0, 0, 4, 0, 0, 0])  # right: 0,0,1,2,2,4
    scores = np.eye(6)[predicted]
    metrics = step_metrics(scores, targets, [[0, 1, 2], [3, 4, 5]], 1, shots)
    assert metrics["accuracy_many"] == pytest.approx(75.0)
    assert metrics["accuracy_medium"] == pytest.approx(50.0)
    assert metrics["accuracy_few"] == pytest.approx(25.0)
    first = step_metrics(scores[:6], targets[:6], [[0, 1, 2], [3, 4, 5]], 0, shots)
    assert first["accuracy_few"] is None and first["accuracy_medium"] == pytest.approx(100.0)  # only seen classes
    assert shot_groups(counts, many_above=400, few_below=60) == {"many": [0], "medium": [1, 2], "few": [3, 4, 5]}


def test_drw_weights_per_epoch():
    from cil.strategies.drw import effective_number_weights, reweighting_epoch

    counts = torch.tensor([5000, 50, 0])
    raw = [(1 - 0.9999) / (1 - 0.9999**n) for n in (5000, 50)]
    expected = [2 * w / sum(raw) for w in raw] + [0.0]  # sum over the classes with samples = 2
    assert effective_number_weights(counts, 0.9999).tolist() == pytest.approx(expected, rel=1e-6)
    assert effective_number_weights(torch.tensor([7, 7]), 0.0).tolist() == [1.0, 1.0]  # beta 0: unweighted
    assert reweighting_epoch(0.8, 200) == 160 and reweighting_epoch(0.8, 30) == 24


def test_drw_is_the_weighted_mean_torch_computes():
    import torch.nn.functional as F
    from cil.strategies.ce import CEConfig, CrossEntropy
    from cil.strategies.drw import DeferredReweighting, DRWConfig

    from cil.models import build_net
    from cil.models.net import NetOutput
    from cil.training.contract import PluginHooks
    from tests.helpers import small_engine

    torch.manual_seed(0)
    engine = small_engine(build_net("tiny", "linear"), n_classes=4, n_old=2, per_class=3)
    ce, drw = CrossEntropy(CEConfig()), DeferredReweighting(DRWConfig())
    engine.components[engine.components.index(engine.loss_component)] = engine.loss_component = ce
    engine.components.append(drw)
    engine.hooks = PluginHooks(engine.components)
    logits, targets = torch.randn(6, 4), torch.tensor([0, 1, 1, 2, 3, 3])
    output = NetOutput(logits, torch.zeros(6, 1), [])
    drw.weights = torch.tensor([0.5, 2.0, 1.0, 0.25])
    weighted = F.cross_entropy(logits, targets, weight=drw.weights)
    assert engine.classification_loss(output, targets).item() == pytest.approx(weighted.item(), rel=1e-6)
    drw.weights = None
    assert engine.classification_loss(output, targets).item() == pytest.approx(F.cross_entropy(logits, targets).item())


def test_drw_refuses_a_loss_without_per_sample_values(capsys):
    argv = ["run", "--scenario", "synthetic-b50-5", "--strategy", "icarl", "--plugin", "drw", "--epochs", "1"]
    assert main([*argv, "--out", "/nonexistent/never"]) == 2
    assert "does not give per sample" in capsys.readouterr().err


def test_the_warm_up_schedule_is_ldam_drws():
    from cil.training.schedules import warmed_up_factor

    lrs = [round(0.1 * warmed_up_factor("multistep", [160, 180], 0.01, 5, 200, e), 8) for e in range(200)]
    # LDAM-DRW's adjust_learning_rate: lr * (e + 1) / 5 for e < 5, x0.01 from epoch index 160, x1e-4 from 180
    assert lrs[:6] == [0.02, 0.04, 0.06, 0.08, 0.1, 0.1] and lrs[159] == 0.1
    assert lrs[160] == 0.001 and lrs[179] == 0.001 and lrs[180] == 1e-5 and lrs[199] == 1e-5
    cfg = build_config("synthetic-b100-0", "il-baseline", {"epochs": 40}, [])
    assert cfg.optim.warmup_epochs == 0
    lt = build_config("synthetic-b100-0", "il-baseline", {"profiles": ["lt-cifar"], "epochs": 40}, [])
    assert (lt.optim.epochs, lt.optim.warmup_epochs, lt.optim.milestones) == (40, 1, [32, 36])
    assert lt.optim.gamma == 0.01 and lt.memory.per_class == 0


# ------------------------------------------------------------------------------------------------ profiles


def test_the_long_tailed_profile_applies_by_itself_to_long_tailed_data():
    mfw = build_config("synthetic-b50-5", "il-baseline-mfw", {}, [])
    assert mfw.plugins[0].beta == 0.01  # the memory's step imbalance
    lt = build_config("synthetic-b50-5", "il-baseline-mfw", {}, ["data.imbalance=exp:100"])
    assert lt.plugins[0].beta == 2.0
    added = build_config("synthetic-b50-5", "podnet", {"add_plugins": ["mfw"], "data": {"imbalance": "exp:10"}}, [])
    assert added.plugins[-1].beta == 2.0  # a plugin the command line adds gets the profile's value too
    step = build_config("synthetic-b50-5", "il-baseline+mfw", {}, ["data.imbalance=step:10"])
    assert step.plugins[-1].beta == 0.01
    mine = build_config("synthetic-b50-5", "il-baseline-mfw", {}, ["data.imbalance=exp:100", "plugins.mfw.beta=3"])
    assert mine.plugins[0].beta == 3.0  # --set still wins


def test_profile_mistakes_are_one_line(capsys):
    argv = ["run", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--out", "/nonexistent/never"]
    assert main([*argv, "--profile", "lt-cifra"]) == 2
    assert "unknown profile 'lt-cifra'" in capsys.readouterr().err
    assert main(["list"]) == 0
    assert "lt-cifar" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ image lists


def write_list(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_train_list_names_the_images_and_numbers_the_classes(image_folder, tmp_path):
    from cil.data import DATASETS

    rows = [f"train/class_{c:02d}/img_{i:03d}.png {10 + 2 * c}" for c in range(6) for i in range(8 - c)]
    train = write_list(tmp_path / "train.txt", rows)
    test = write_list(tmp_path / "test.txt", [f"test/class_{c:02d}/img_000.png {10 + 2 * c}" for c in range(6)])
    cfg = build_config(
        "folder-b3-1",
        "il-baseline",
        {"data": {"root": str(image_folder)}},
        [f"data.train_list={train}", f"data.test_list={test}"],
    )
    spec = DATASETS["folder"]
    assert spec.class_names(cfg.data) == [f"class_{c:02d}" for c in range(6)]
    assert spec.count_train(cfg.data) == [8, 7, 6, 5, 4, 3]
    loaded = spec.load(cfg.data)
    assert len(loaded.train) == 33 and len(loaded.test) == 6 and loaded.test.targets.tolist() == list(range(6))


@pytest.mark.parametrize(
    "lines, message",
    [
        (["train/class_00/img_000.png"], "expected 'PATH LABEL'"),
        (["train/class_00/missing.png 0", "train/class_00/img_000.png 0"], "names 1 missing image(s)"),
        (["# only a comment"], "names no images"),
    ],
)
def test_bad_lists_are_one_line(image_folder, tmp_path, capsys, lines, message):
    listed = write_list(tmp_path / "train.txt", lines)
    argv = ["run", "--scenario", "folder-b1-0", "--strategy", "il-baseline", "--data-root", str(image_folder)]
    assert main([*argv, "--set", f"data.train_list={listed}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_lists_are_for_folder_datasets(capsys):
    argv = ["run", "--scenario", "cifar10-b10-0", "--strategy", "il-baseline", "--out", "/nonexistent/never"]
    assert main([*argv, "--set", "data.train_list=x.txt"]) == 2
    assert "names the images of a folder dataset" in capsys.readouterr().err


def test_synthetic_counts_agree_with_the_generator():
    from cil.data import SYNTHETIC_TRAIN_PER_CLASS
    from cil.data.synthetic import TRAIN_PER_CLASS

    assert SYNTHETIC_TRAIN_PER_CLASS == TRAIN_PER_CLASS


# ------------------------------------------------------------------------------------------------ a run


def test_an_imbalanced_run_records_what_it_kept(tmp_path):
    from cil import api
    from tests.helpers import tiny_api_options

    options = {**tiny_api_options(), "limit_per_class": 20, "imbalance": "exp:10"}
    results = api.run_experiment("synthetic-b5-1", "il-baseline-bsce", out=tmp_path / "r", **options)
    counts = results["train_counts"]
    assert counts == [int(20 * 0.1 ** (r / 9)) for r in range(10)]  # per label: the class order's positions
    record = results["imbalance"]
    assert record["profile"] == "exp:10:ordered" and record["seed"] == 0 and record["n_train"] == sum(counts)
    assert [s["n_train"] for s in results["steps"]][0] == sum(counts[:5])
    assert results["steps"][-1]["n_test"] == 20  # 2 test images per class, untouched
    step = results["steps"][-1]
    assert step["accuracy_many"] is None and None not in (step["accuracy_medium"], step["accuracy_few"])
    again = api.run_experiment("synthetic-b5-1", "il-baseline-bsce", out=tmp_path / "s", **options)
    assert again["imbalance"]["kept_sha256"] == record["kept_sha256"]


# ------------------------------------------------------------------------------------------------ LWS


def test_class_aware_positions_visit_every_class_equally():
    from cil.strategies.lws import class_aware_positions

    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 1)
    positions = class_aware_positions(labels, 14, torch.Generator().manual_seed(0))
    drawn = labels[positions]
    assert torch.bincount(drawn, minlength=3).tolist() in ([5, 5, 4], [5, 4, 5], [4, 5, 5])
    ones = positions[drawn == 1].tolist()
    assert sorted(ones[:3]) == [10, 11, 12]  # a class's samples in turn before any repeats
    again = class_aware_positions(labels, 14, torch.Generator().manual_seed(0))
    assert torch.equal(positions, again)


def test_lws_forward_and_its_gradient_by_hand():
    import torch.nn.functional as F
    from cil.strategies.lws import scaled_logits

    logits = torch.tensor([[2.0, 1.0, 0.0], [0.5, -1.0, 1.5]])
    targets = torch.tensor([0, 2])
    scales = torch.tensor([1.0, 0.5, 2.0, 9.0], requires_grad=True)  # a fourth class not seen yet: unused
    z = scaled_logits(logits, scales)
    assert z.tolist() == [[2.0, 0.5, 0.0], [0.5, -0.5, 3.0]]
    F.cross_entropy(z, targets).backward()
    p = torch.softmax(z.detach(), dim=1)
    onehot = F.one_hot(targets, 3).float()
    expected = ((p - onehot) * logits).sum(dim=0) / 2  # dL/ds_c = mean_i (p_ic - y_ic) z_ic
    assert scales.grad[:3].tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    assert scales.grad[3].item() == 0.0


def test_lws_in_a_long_tailed_incremental_run_resumes_exactly(tmp_path):
    from cil.runs.run import run
    from tests.helpers import StopBeforeStep, quiet

    def config():
        sets = [
            "model.backbone=resnet8",
            "optim.batch_size=16",
            "data.synthetic_classes=12",
            "data.test_limit_per_class=5",
            "plugins.lws.epochs=2",
        ]
        flags = {
            "epochs": 1,
            "progress": False,
            "add_plugins": ["lws"],
            "logging": {"loggers": []},
            "data": {"limit_per_class": 20, "imbalance": "exp:10:shuffled"},
            "memory": {"per_class": 3},
        }
        return build_config("synthetic-b6-3", "lucir", flags, sets)

    full = run(config(), out=tmp_path / "full", log=quiet)
    with pytest.raises(KeyboardInterrupt):
        run(config(), out=tmp_path / "cut", extra_plugins=[StopBeforeStep(2)], log=quiet)
    resumed = run(config(), out=tmp_path / "cut", resume=True, log=quiet)
    assert [s["accuracy"] for s in full["steps"]] == [s["accuracy"] for s in resumed["steps"]]
    last = full["steps"][-1]
    assert full["strategy"] == "lucir+lws" and full["eval"] == "cnn"
    assert last["lws_scale_range"][0] <= last["lws_scale_range"][1] and "classifier_accuracy" in last


def test_meta_bsce_refuses_a_profile_that_leaves_no_room_for_its_balanced_set(capsys):
    argv = ["run", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline-meta-bsce", "--out", "/nonexistent/x"]
    assert main([*argv, "--imbalance", "exp:500"]) == 2
    assert "as the balanced B_t, but exp:500:ordered leaves a class 1 training image(s)" in capsys.readouterr().err
    assert build_config("synthetic-b50-5", "il-baseline-meta-bsce", {}, ["data.imbalance=exp:100"]).loss.name


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_imbalanced_runs_with_drw_and_lws_under_mixed_precision(tmp_path, precision):
    sets = [
        "model.backbone=resnet8",
        "optim.batch_size=16",
        "data.synthetic_classes=8",
        "data.test_limit_per_class=3",
        "plugins.lws.epochs=1",
        f"runtime.precision={precision}",
        "plugins.drw.start=0.5",
    ]
    flags = {
        "epochs": 2,
        "progress": False,
        "add_plugins": ["drw", "lws"],
        "logging": {"loggers": []},
        "data": {"limit_per_class": 16, "imbalance": "step:4"},
        "memory": {"per_class": 2},
    }
    from cil.runs.run import run
    from tests.helpers import quiet

    results = run(build_config("synthetic-b4-2", "il-baseline-bsce", flags, sets), out=tmp_path / "r", log=quiet)
    assert results["status"] == "complete" and results["env"]["runtime"]["precision"] == precision
    assert results["steps"][-1]["drw_from_epoch"] == 1 and results["imbalance"]["profile"] == "step:4:ordered"


def test_a_sweep_takes_several_profiles_as_a_grid_axis(capsys):
    argv = ["sweep", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--dry-run"]
    assert main([*argv, "--imbalance", "exp:100,step:10:shuffled", "--out", "/tmp/never-written"]) == 0
    err = capsys.readouterr().err
    assert "2 runs" in err and "data.imbalance=exp:100 " in err and "data.imbalance=step:10:shuffled " in err
