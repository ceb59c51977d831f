"""Accuracy metrics of one evaluation: top-1, top-5, per class group, confusion matrix.

All accuracies are percentages over the test images of the classes in question (the test sets
are class-balanced, so this is also the mean per-class accuracy).
"""

from __future__ import annotations

import numpy as np


def topk_correct(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Boolean per sample: the target is among the k highest scores (k capped at the class count)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return (top == targets[:, None]).any(axis=1)


def accuracy(correct: np.ndarray) -> float:
    return float(100.0 * correct.mean()) if len(correct) else float("nan")


def group_accuracy(correct: np.ndarray, targets: np.ndarray, classes: list[int]) -> float | None:
    """Top-1 accuracy over the test images whose label is in ``classes`` (None for no classes)."""
    if not classes:
        return None
    mask = np.isin(targets, classes)
    return accuracy(correct[mask]) if mask.any() else None


def confusion_matrix(predictions: np.ndarray, targets: np.ndarray, n_classes: int) -> np.ndarray:
    """Integer matrix M[true, predicted]."""
    flat = targets.astype(np.int64) * n_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


SHOTS = ("many", "medium", "few")


def shot_groups(train_counts: list[int], many_above: int = 100, few_below: int = 20) -> dict[str, list[int]]:
    """Labels of the many-shot (more than ``many_above`` training images), medium-shot and few-shot (fewer than
    ``few_below``) classes: the convention of Liu et al.'s OLTR (100 and 20), used by every long-tailed paper."""
    groups: dict[str, list[int]] = {shot: [] for shot in SHOTS}
    for label, count in enumerate(train_counts):
        shot = "many" if count > many_above else "few" if count < few_below else "medium"
        groups[shot].append(label)
    return groups


def step_metrics(
    scores: np.ndarray,
    targets: np.ndarray,
    step_classes: list[list[int]],
    step: int,
    shots: dict[str, list[int]] | None = None,
) -> dict:
    """Metrics after ``step``: over all seen classes, the base classes, old classes and new classes, and (given
    ``shots``, ``shot_groups``' labels) the seen many-, medium- and few-shot classes (None for a group without
    a seen class)."""
    predictions = scores.argmax(axis=1)
    correct = predictions == targets
    old = [c for group in step_classes[:step] for c in group]
    seen = set(c for group in step_classes[: step + 1] for c in group)
    by_shot = {
        f"accuracy_{shot}": group_accuracy(correct, targets, [c for c in labels if c in seen])
        for shot, labels in (shots or {}).items()
    }
    return {
        "accuracy": accuracy(correct),
        "top5": accuracy(topk_correct(scores, targets, 5)),
        "accuracy_base": group_accuracy(correct, targets, step_classes[0]),
        "accuracy_old": group_accuracy(correct, targets, old),
        "accuracy_new": group_accuracy(correct, targets, step_classes[step]),
        **by_shot,
        "accuracy_per_group": [group_accuracy(correct, targets, group) for group in step_classes[: step + 1]],
        "n_test": int(len(targets)),
    }


CLASSIFIER_KEYS = ("accuracy", "top5", "accuracy_base", "accuracy_old", "accuracy_new")


def classifier_metrics(scores: np.ndarray, targets: np.ndarray, step_classes: list[list[int]], step: int) -> dict:
    """``classifier_accuracy``, ``classifier_top5``, ``classifier_accuracy_base/old/new``: the metrics of the
    classifier's own logits, when a step's predictions come from something else (iCaRL's nearest mean of
    exemplars: its "hybrid1"; BiC before its bias correction)."""
    metrics = step_metrics(scores, targets, step_classes, step)
    return {f"classifier_{key}": metrics[key] for key in CLASSIFIER_KEYS}


def average_incremental_accuracy(accuracies: list[float]) -> float:
    """Mean of the accuracy after every step, the base step included (Rebuffi et al. 2017)."""
    return float(np.mean(accuracies)) if accuracies else float("nan")


def forgetting(group_accuracies: list[list[float | None]]) -> float | None:
    """Average forgetting after the last step (Chaudhry et al. 2018, per class group).

    ``group_accuracies[t][g]`` is the accuracy on the classes of step g after step t (g <= t), as
    in ``accuracy_per_group``. For every group learned before the last step T, forgetting is the
    best accuracy it ever had before T minus its accuracy after T; the result is the mean over
    those groups (None before the first incremental step). Higher means more forgotten.
    """
    last = len(group_accuracies) - 1
    if last < 1:
        return None
    drops = []
    for g in range(last):
        before = [a for t in range(g, last) if (a := group_accuracies[t][g]) is not None]
        final = group_accuracies[last][g]
        if before and final is not None:
            drops.append(max(before) - final)
    return float(np.mean(drops)) if drops else None
