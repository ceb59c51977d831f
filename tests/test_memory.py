"""Herding selection, random selection and memory sizes (growing and fixed budget)."""

import torch

from cil.training.memory import RehearsalMemory, herding_selection, random_selection


def test_herding_order_on_a_known_case():
    """Four copies of direction A (norm 10) and one of B (norm 1).

    After L2 normalisation the class mean is 0.8 A + 0.2 B. Greedy running means along the
    segment A-B: k=1 picks A (0.2 away), k=2 A (A+A: 0.2 vs A+B: 0.3), k=3 B (2A+B: 0.13 vs
    0.2), k=4 A, k=5 the last A; ties between identical A's go to the lowest index.
    """
    a, b = torch.tensor([10.0, 0.0]), torch.tensor([0.0, 1.0])
    features = torch.stack([a, a, a, b, a])
    assert herding_selection(features, 5).tolist() == [0, 1, 3, 2, 4]
    assert herding_selection(features, 3).tolist() == [0, 1, 3]  # any prefix is a selection


def test_herding_first_pick_is_nearest_to_the_mean():
    torch.manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(50, 8), dim=1)
    first = herding_selection(features, 1).item()
    assert first == torch.argmin((features - features.mean(0)).norm(dim=1)).item()


def test_herding_never_repeats_and_caps_at_n():
    torch.manual_seed(1)
    chosen = herding_selection(torch.randn(7, 4), 20)
    assert sorted(chosen.tolist()) == list(range(7))


def test_random_selection_is_seeded_and_without_replacement():
    a = random_selection(100, 10, torch.Generator().manual_seed(3))
    b = random_selection(100, 10, torch.Generator().manual_seed(3))
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 10


def _fill(memory: RehearsalMemory, classes: range, n_seen: int) -> None:
    quota = memory.quota(n_seen)
    memory.shrink(quota)
    for c in classes:
        memory.add_class(c, torch.arange(100 * c, 100 * c + 50), quota)


def test_growing_memory_keeps_n_per_class():
    memory = RehearsalMemory(per_class=20)
    for classes in [range(0, 50), range(50, 60), range(60, 70)]:
        _fill(memory, classes, classes.stop)
        assert len(memory) == 20 * classes.stop
        assert set(memory.sizes().values()) == {20}


def test_fixed_budget_splits_evenly_and_shrinks_by_prefix():
    memory = RehearsalMemory(per_class=20, budget=120)
    _fill(memory, range(0, 10), 10)
    assert set(memory.sizes().values()) == {12} and len(memory) == 120
    before = memory.exemplars[3].clone()
    _fill(memory, range(10, 20), 20)
    assert set(memory.sizes().values()) == {6} and len(memory) == 120
    assert memory.exemplars[3].tolist() == before[:6].tolist()  # herding-order prefix kept
    _fill(memory, range(20, 30), 30)
    assert set(memory.sizes().values()) == {4} and len(memory) == 120
    _fill(memory, range(30, 40), 40)
    assert set(memory.sizes().values()) == {3} and len(memory) == 120


def test_state_round_trip():
    memory = RehearsalMemory(per_class=2)
    _fill(memory, range(0, 3), 3)
    copy = RehearsalMemory()
    copy.load_state_dict(memory.state_dict())
    assert [t.tolist() for t in copy.indices_and_labels()] == [t.tolist() for t in memory.indices_and_labels()]
