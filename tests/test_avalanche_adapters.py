"""cil.avalanche: cil's BSCE, herding and distillations inside a plain Avalanche Naive strategy."""

import collections
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cil.strategies.bsce import balanced_softmax_cross_entropy
from cil.strategies.il_baseline import distillation_loss

from cil.avalanche import (
    BalancedSoftmaxCriterion,
    HerdingSelection,
    LogitDistillationPlugin,
    PODFlatPlugin,
    sampled_class_counts,
)
from cil.avalanche.bsce import samples_per_epoch
from cil.training.memory import herding_selection

DOC = Path(__file__).resolve().parent.parent / "docs" / "avalanche.md"
EXAMPLE = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)


def doc_namespace(upto: str | None = None) -> dict:
    namespace: dict = {}
    code = EXAMPLE if upto is None else EXAMPLE.split(upto)[0]
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def parts():
    """The doc's dataset and model classes, and its two-experience benchmark."""
    from avalanche.benchmarks import nc_benchmark

    ns = doc_namespace(upto="torch.manual_seed(0)")
    benchmark = nc_benchmark(
        ns["Points"](50, seed=1),
        ns["Points"](20, seed=2),
        n_experiences=2,
        task_labels=False,
        fixed_class_order=[0, 1, 2, 3],
    )
    return ns, benchmark


def naive(model, plugins, criterion=None, mem_size=20, batch_size_mem=None, selection=None):
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from avalanche.training.storage_policy import ParametricBuffer

    memory = ParametricBuffer(max_size=mem_size, groupby="class", selection_strategy=selection)
    replay = ReplayPlugin(mem_size=mem_size, batch_size_mem=batch_size_mem, storage_policy=memory)
    return Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        criterion=criterion if criterion is not None else torch.nn.CrossEntropyLoss(),
        train_mb_size=16,
        train_epochs=1,
        eval_mb_size=64,
        plugins=[*plugins, replay],
        evaluator=EvaluationPlugin(loggers=[]),
    )


def test_the_documented_example_runs():
    ns = doc_namespace()
    assert ns["bsce"].class_counts.tolist() == [38.0, 38.0, 50.0, 50.0]
    assert 0.0 <= ns["accuracy"]["Top1_Acc_Stream/eval_phase/test_stream/Task000"] <= 1.0


def test_samples_per_epoch_counts_partial_batches_of_each_pass():
    assert samples_per_epoch(100, 16, 7) == 100  # the experience itself: one pass
    assert samples_per_epoch(20, 8, 7) == 48  # 8, 8, 4 | 8, 8, 4 | 8
    assert samples_per_epoch(20, 8, 7, drop_last=True) == 56  # 8, 8 | 8, 8 | 8, 8 | 8
    assert samples_per_epoch(5, 8, 3, drop_last=True) == 0


def test_bsce_counts_are_the_replay_loaders_sampling(parts):
    """lambda equals the label counts of the mini-batches the replay loader really draws."""
    from avalanche.benchmarks.utils.data_loader import ReplayDataLoader

    ns, benchmark = parts
    first, second = benchmark.train_stream
    buffer = first.dataset.subset(list(range(0, 100, 5)))  # 10 exemplars of each old class
    loader = ReplayDataLoader(
        second.dataset, buffer, oversample_small_tasks=True, batch_size=16, batch_size_mem=8, shuffle=True
    )
    seen = collections.Counter()
    epochs = 30
    for _ in range(epochs):
        for _, y, _ in loader:
            seen.update(y.tolist())
    expected = sampled_class_counts(loader, second.dataset)
    assert expected.tolist() == [24.0, 24.0, 50.0, 50.0]
    assert seen[2] == seen[3] == 50 * epochs and seen[0] + seen[1] == 48 * epochs
    assert abs(seen[0] / epochs - 24) < 3
    # counting the experience alone leaves the buffer's classes at 0: an infinite loss on their samples
    alone = sampled_class_counts(None, second.dataset).float()
    assert alone.tolist() == [0.0, 0.0, 50.0, 50.0]
    assert math.isinf(balanced_softmax_cross_entropy(torch.zeros(1, 4), torch.tensor([0]), alone).item())


def test_bsce_criterion_trains_two_experiences_under_replay(parts):
    ns, benchmark = parts
    torch.manual_seed(0)
    bsce = BalancedSoftmaxCriterion(alpha=0.5)
    losses = []

    class Record:
        def __getattr__(self, name):
            if name.startswith(("before_", "after_")):
                return lambda strategy, **kw: losses.append(strategy.loss.item()) if name == "before_backward" else None
            raise AttributeError(name)

    strategy = naive(ns["Net"](), [Record()], criterion=bsce)
    for experience in benchmark.train_stream:
        strategy.train(experience)
    assert all(math.isfinite(v) for v in losses) and len(losses) == 14
    # second experience: old classes 0, 1 drawn as 2 passes of 20 + 16 = 38 each, times alpha
    assert bsce.class_counts.tolist() == [19.0, 19.0, 50.0, 50.0]
    logits, targets = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    weights = torch.tensor([19.0, 19.0, 50.0, 50.0])
    bsce._training = True
    assert torch.allclose(bsce(logits, targets), F.cross_entropy(logits + weights.log(), targets))
    bsce._training = False  # evaluation: the plain cross-entropy of the raw logits
    assert torch.allclose(bsce(logits, targets), F.cross_entropy(logits, targets))


def test_herding_selection_keeps_the_herding_prefix_of_each_class(parts):
    ns, benchmark = parts
    torch.manual_seed(0)
    model = ns["Net"]()
    strategy = naive(model, [], selection=HerdingSelection(model, "features"), mem_size=8)
    first = benchmark.train_stream[0]
    strategy.train(first)
    from avalanche.training.plugins import ReplayPlugin

    replay = next(p for p in strategy.plugins if isinstance(p, ReplayPlugin))
    buffer = replay.storage_policy.buffer
    stored = torch.stack([buffer[i][0] for i in range(len(buffer))])
    labels = torch.tensor(list(buffer.targets))
    x = torch.stack([first.dataset[i][0] for i in range(len(first.dataset))])
    y = torch.tensor(list(first.dataset.targets))
    with torch.no_grad():
        features = model.features(x)
    for c in (0, 1):
        chosen = herding_selection(features[y == c], 4)
        assert torch.equal(stored[labels == c].sort(0).values, x[y == c][chosen].sort(0).values)


def _expected_loss_plugin(check):
    """A plugin after the one under test: compares strategy.loss with ``check(strategy)``."""
    compared = []

    class Compare:
        def __getattr__(self, name):
            if name == "before_backward":
                return lambda strategy, **kw: compared.append((strategy.loss.item(), check(strategy)))
            if name.startswith(("before_", "after_")):
                return lambda strategy, **kw: None
            raise AttributeError(name)

    return Compare(), compared


def test_logit_distillation_adds_eq_1_2_from_the_previous_model(parts):
    ns, benchmark = parts
    torch.manual_seed(0)
    kd = LogitDistillationPlugin(temperature=2.0)

    def expected(strategy):
        if kd.previous_model is None:
            return F.cross_entropy(strategy.mb_output, strategy.mb_y).item()
        with torch.no_grad():
            teacher = kd.previous_model(strategy.mb_x)[:, :2]
        rho = 2 / 4
        return (
            (1 - rho) * F.cross_entropy(strategy.mb_output, strategy.mb_y)
            + rho * distillation_loss(strategy.mb_output[:, :2], teacher, 2.0)
        ).item()

    compare, compared = _expected_loss_plugin(expected)
    strategy = naive(ns["Net"](), [kd, compare])
    for experience in benchmark.train_stream:
        strategy.train(experience)
    assert kd.old_classes == [0, 1, 2, 3] and len(compared) == 14
    for got, want in compared:
        assert got == pytest.approx(want, rel=1e-5)
    assert all(not p.requires_grad for p in kd.previous_model.parameters())


def test_pod_flat_adds_the_embedding_distance_to_the_previous_model(parts):
    ns, benchmark = parts
    torch.manual_seed(0)
    pod = PODFlatPlugin("features", weight=1.0)

    def expected(strategy):
        ce = F.cross_entropy(strategy.mb_output, strategy.mb_y)
        if pod.previous_model is None:
            return ce.item()
        with torch.no_grad():
            previous = pod.previous_model.features(strategy.mb_x)
        current = strategy.model.features(strategy.mb_x)
        return (ce + math.sqrt(4 / 2) * (1 - F.cosine_similarity(current, previous)).mean()).item()

    compare, compared = _expected_loss_plugin(expected)
    strategy = naive(ns["Net"](), [pod, compare])
    for experience in benchmark.train_stream:
        strategy.train(experience)
    assert len(compared) == 14 and compared[-1][0] != pytest.approx(
        F.cross_entropy(torch.zeros(1, 4), torch.tensor([0])).item()
    )
    for got, want in compared:
        assert got == pytest.approx(want, rel=1e-5)
    assert not strategy.model.features._forward_hooks  # nothing left attached to the user's model


def test_pod_flat_names_a_missing_layer(parts):
    ns, benchmark = parts
    strategy = naive(ns["Net"](), [PODFlatPlugin("backbone")])
    with pytest.raises(ValueError, match="no module 'backbone'"):
        strategy.train(benchmark.train_stream[0])


def test_a_fixed_head_predicts_only_classes_seen_so_far(parts):
    """A 10-way head from the start (common in Avalanche code), trained on classes 0 and 1: BSCE leaves the 8
    other classes out of its softmax, so their logits are never pushed down; the criterion masks them at
    evaluation, so no prediction goes to a class not seen yet (before: most of them could), and the evaluation
    loss is the cross-entropy of the raw logits."""
    ns, benchmark = parts
    torch.manual_seed(0)

    class FixedHead(ns["Net"]):
        def __init__(self):
            super().__init__()
            self.classifier = torch.nn.Linear(16, 10)
            with torch.no_grad():  # untrained classes start ahead: what an unlucky initialisation can do
                self.classifier.bias[2:] = 5.0

    predictions, losses = [], []

    class Record:
        def __getattr__(self, name):
            if name == "after_eval_iteration":
                return lambda strategy, **kw: (
                    predictions.append(strategy.mb_output.argmax(1)),
                    losses.append(strategy.loss.item()),
                )
            if name.startswith(("before_", "after_")):
                return lambda strategy, **kw: None
            raise AttributeError(name)

    bsce = BalancedSoftmaxCriterion()
    strategy = naive(FixedHead(), [Record()], criterion=bsce)
    first = benchmark.train_stream[0]
    strategy.train(first)
    strategy.eval([benchmark.test_stream[0]])
    assert set(torch.cat(predictions).tolist()) <= {0, 1} and bsce.seen.tolist()[:2] == [True, True]
    assert all(math.isfinite(v) for v in losses)
    unmasked = BalancedSoftmaxCriterion(mask_unseen=False)
    predictions.clear()
    strategy = naive(FixedHead(), [Record()], criterion=unmasked)
    strategy.train(first)
    strategy.eval([benchmark.test_stream[0]])
    assert set(torch.cat(predictions).tolist()) - {0, 1}  # without the mask, unseen classes are predicted
