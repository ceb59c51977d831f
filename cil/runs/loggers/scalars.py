"""The values every logger records, named once for all of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cil.config import flatten

if TYPE_CHECKING:
    from cil.training.engine import EpochResult

ACCURACY_KEYS = {
    "accuracy": "all",
    "top5": "top5",
    "accuracy_base": "base",
    "accuracy_old": "old",
    "accuracy_new": "new",
}
NOT_LOGGED = ("step", "n_test")


def epoch_scalars(result: EpochResult) -> dict[str, float]:
    """``loss/<part>`` (mean over the epoch's mini-batches), ``loss/total``, ``lr`` (the rate the epoch
    trained with), ``learned/<name>``."""
    values = {f"loss/{name}": float(value) for name, value in result.loss_parts.items()}
    if result.loss_parts:
        values["loss/total"] = float(sum(result.loss_parts.values()))
    values["lr"] = float(result.lr)
    values.update({f"learned/{name}": float(value) for name, value in result.learned.items()})
    return values


def step_scalars(record: dict[str, Any], results: dict[str, Any]) -> dict[str, float]:
    """``accuracy/{all,top5,base,old,new}``, ``aia`` and ``forgetting`` so far, and ``step/<key>`` for
    every other number in the step's record (memory size, rho, alpha, train seconds, ...)."""
    values = {
        f"accuracy/{tag}": float(record[key]) for key, tag in ACCURACY_KEYS.items() if record.get(key) is not None
    }
    for key in ("avg_incremental_accuracy", "forgetting"):
        if results.get(key) is not None:
            values["aia" if key == "avg_incremental_accuracy" else key] = float(results[key])
    for key, value in record.items():
        if (
            key not in ACCURACY_KEYS
            and key not in NOT_LOGGED
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            values[f"step/{key}"] = float(value)
    return values


def summary_scalars(results: dict[str, Any]) -> dict[str, float]:
    """The run's headline numbers: AIA, final accuracy and forgetting (those known so far)."""
    names = {"avg_incremental_accuracy": "aia", "final_accuracy": "final_accuracy", "forgetting": "forgetting"}
    return {name: float(results[key]) for key, name in names.items() if results.get(key) is not None}


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
