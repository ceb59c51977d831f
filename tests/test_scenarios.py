"""Scenario names, class order, splits and the Avalanche streams."""

import numpy as np
import pytest

from cil.data.scenarios import ScenarioName, ScenarioPlan, build_streams, class_order, experience_indices, step_sizes
from cil.errors import UserError

DATASETS = ["cifar100", "cifar10", "imagenet-subset", "imagenet", "folder", "synthetic"]


def test_cifar100_seed_1993_order():
    assert class_order(100, 1993)[:10] == [68, 56, 78, 8, 23, 84, 90, 65, 74, 76]


@pytest.mark.parametrize(
    "name, n, expected",
    [
        ("cifar100-b50-5", 100, [50] + [10] * 5),
        ("cifar100-b50-10", 100, [50] + [5] * 10),
        ("cifar100-b50-25", 100, [50] + [2] * 25),
        ("imagenet-b0-10", 1000, [100] * 10),
        ("imagenet-subset-b50-10", 100, [50] + [5] * 10),
        ("synthetic-b100-0", 100, [100]),
    ],
)
def test_step_sizes(name, n, expected):
    assert step_sizes(ScenarioName.parse(name, DATASETS), n) == expected


def test_dataset_names_with_hyphens_parse():
    parsed = ScenarioName.parse("imagenet-subset-b50-25", DATASETS)
    assert (parsed.dataset, parsed.base, parsed.steps) == ("imagenet-subset", 50, 25)


@pytest.mark.parametrize(
    "name, n, message",
    [
        ("cifar100-b50-7", 100, "valid step counts: 1, 2, 5, 10, 25, 50"),
        ("cifar100-b120-5", 100, "has 100"),
        ("cifar100-b0-3", 100, "do not split into 3 equal steps"),
        ("cifar100-b100-5", 100, "holds all 100 classes"),
        ("cifar100-b50-0", 100, "leave 50 classes unused"),
    ],
)
def test_impossible_splits_are_rejected(name, n, message):
    with pytest.raises(UserError, match=message):
        step_sizes(ScenarioName.parse(name, DATASETS), n)


@pytest.mark.parametrize(
    "name, message",
    [
        ("cifar100-50-5", "expected DATASET-bBASE-STEPS"),
        ("cifar1000-b50-5", "did you mean 'cifar100'"),
    ],
)
def test_bad_names(name, message):
    with pytest.raises(UserError, match=message):
        ScenarioName.parse(name, DATASETS)


def test_plan_remaps_order_to_labels():
    plan = ScenarioPlan.make(ScenarioName.parse("cifar100-b50-5", DATASETS), 100, 1993)
    assert plan.step_classes[0] == list(range(50)) and plan.step_classes[5] == list(range(90, 100))
    info = plan.to_dict()
    assert info["steps"][0]["classes"][:3] == [68, 56, 78]
    assert info["steps"][1]["classes"] == plan.order[50:60]


def test_avalanche_streams_carry_indices_and_remapped_labels():
    plan = ScenarioPlan.make(ScenarioName.parse("synthetic-b4-2", DATASETS), 8, 1993)
    train_targets = np.repeat(np.arange(8), 3)
    test_targets = np.repeat(np.arange(8), 2)
    train, test = build_streams(plan, train_targets, test_targets)
    assert len(train) == len(test) == 3
    label_of = {c: i for i, c in enumerate(plan.order)}
    for t, (tr, te) in enumerate(zip(train, test)):
        idx, labels = experience_indices(tr)
        assert sorted(set(labels.tolist())) == plan.step_classes[t]
        assert [label_of[c] for c in train_targets[idx]] == labels.tolist()
        tidx, tlabels = experience_indices(te)
        assert sorted(set(tlabels.tolist())) == plan.step_classes[t]
        assert len(tidx) == 2 * len(plan.step_classes[t])
