"""The values every logger records, named once for all of them.

One vocabulary: a number has the name it has in results.json (``accuracy``, ``accuracy_old``,
``avg_incremental_accuracy``, ``final_accuracy``, ...) on every surface (TensorBoard, CSV, W&B,
``cil report``, the Python API's frames); the loggers add only a section prefix that says what the
number is: ``train/`` (per epoch), ``test/`` (per step, on the test set), ``step/`` (the step's own
numbers: images trained on, memory size, seconds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cil.config import flatten

if TYPE_CHECKING:
    from cil.training.engine import EpochResult

ACCURACY_KEYS = (
    "accuracy",
    "top5",
    "accuracy_base",
    "accuracy_old",
    "accuracy_new",
    "accuracy_many",
    "accuracy_medium",
    "accuracy_few",
)
"""A step's test accuracies, named as in results.json (many/medium/few: classes by training-set size)."""
SUMMARY_KEYS = ("avg_incremental_accuracy", "final_accuracy", "forgetting")
"""The run's headline numbers, named as in results.json (and ``cil report --metric``)."""
NOT_LOGGED = ("step", "n_test")


def epoch_scalars(result: EpochResult) -> dict[str, float]:
    """``train/loss/<part>`` (mean over the epoch's mini-batches), ``train/loss/total``, ``train/lr`` (the rate
    the epoch trained with), ``train/learned/<name>``."""
    values = {f"train/loss/{name}": float(value) for name, value in result.loss_parts.items()}
    if result.loss_parts:
        values["train/loss/total"] = float(sum(result.loss_parts.values()))
    values["train/lr"] = float(result.lr)
    values.update({f"train/learned/{name}": float(value) for name, value in result.learned.items()})
    return values


def step_scalars(record: dict[str, Any], results: dict[str, Any]) -> dict[str, float]:
    """``test/<key>`` for the step's accuracies (``accuracy``, ``top5``, ``accuracy_base``, ``accuracy_old``,
    ``accuracy_new``, ``accuracy_many``, ``accuracy_medium``, ``accuracy_few``, and the uncorrected classifier's
    ``classifier_*`` where a post-hoc correction made the predictions) and the run's
    ``avg_incremental_accuracy`` and ``forgetting`` so far; ``step/<key>`` for every other number in the step's
    record (memory size, rho, alpha, train seconds, ...: not test metrics)."""
    values = {f"test/{key}": float(record[key]) for key in ACCURACY_KEYS if record.get(key) is not None}
    for key, value in record.items():  # the classifier before a post-hoc correction: test metrics too
        if key.startswith("classifier_") and isinstance(value, (int, float)) and not isinstance(value, bool):
            values[f"test/{key}"] = float(value)
    for key in ("avg_incremental_accuracy", "forgetting"):
        if results.get(key) is not None:
            values[f"test/{key}"] = float(results[key])
    for key, value in record.items():
        if (
            key not in ACCURACY_KEYS
            and key not in NOT_LOGGED
            and not key.startswith("classifier_")
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            values[f"step/{key}"] = float(value)
    return values


def summary_scalars(results: dict[str, Any]) -> dict[str, float]:
    """The run's headline numbers known so far, under their results.json names (SUMMARY_KEYS)."""
    return {key: float(results[key]) for key in SUMMARY_KEYS if results.get(key) is not None}


def hyperparameters(config: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """The resolved config as flat ``section.key`` hyper-parameters: what the run computes, not where or how
    it runs (``out``, ``device``, ``progress``, ``logging.*``, ``data.root``, ...: RUNTIME_KEYS), with the memory
    as the run used it (a fixed budget has no per-class size); lists joined, unset values left out (so that a
    key has one type in every run: never the text "none" beside numbers)."""
    from cil.config import RUNTIME_KEYS

    flat: dict[str, bool | int | float | str] = {}
    for key, value in flatten(config).items():
        if key in RUNTIME_KEYS or key.startswith("logging.") or value is None:
            continue
        if isinstance(value, list):
            value = ",".join(map(str, value))
        flat[key] = value
    if "memory.budget" in flat:
        flat.pop("memory.per_class", None)
    return flat
