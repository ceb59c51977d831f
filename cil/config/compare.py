"""Comparing configurations: which keys differ (resume, sweeps, reports), read as flat dotted keys."""

from __future__ import annotations

from typing import Any

from cil.config.fields import join_key

RUNTIME_KEYS = (
    "out",
    "progress",
    "device",
    "logging.loggers",
    "logging.wandb_project",
    "logging.wandb_entity",
    "logging.wandb_mode",
    "logging.wandb_group",
    "logging.wandb_tags",
    "logging.wandb_job_type",
    "data.root",
    "data.num_workers",
    "runtime.compile",
    "runtime.eval_batch_size",
    "runtime.threads",
    "tensorboard",
)
"""Keys that say where and how a run executes, not what it computes: free to differ on resume
(precision and memory layout change the arithmetic, so a resumed run keeps them). ``tensorboard``
is the on/off switch of runs saved before ``logging.loggers`` replaced it."""


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 0.1}} -> {'optim.lr': 0.1}; plugins are addressed by name (plugins.NAME.key)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = join_key(prefix, key)
        if key == "plugins" and not prefix and isinstance(value, list):
            flat[path] = [p["name"] if isinstance(p, dict) else p for p in value]
            for plugin in value:
                if isinstance(plugin, dict):
                    flat.update(flatten({k: v for k, v in plugin.items() if k != "name"}, f"plugins.{plugin['name']}"))
        elif isinstance(value, dict):
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def config_differences(a: dict[str, Any], b: dict[str, Any], ignore: tuple[str, ...] = RUNTIME_KEYS) -> list[str]:
    """Sorted dotted keys whose values differ between two config dicts (``ignore`` left out)."""
    fa, fb = flatten(a), flatten(b)
    return sorted(k for k in set(fa) | set(fb) if k not in ignore and fa.get(k, "<unset>") != fb.get(k, "<unset>"))


def describe_differences(saved: dict[str, Any], given: dict[str, Any], keys: list[str]) -> str:
    """'optim.epochs (saved 10, given 20), ...' for error messages."""
    fs, fg = flatten(saved), flatten(given)
    return ", ".join(f"{k} (saved {fs.get(k, '<unset>')}, given {fg.get(k, '<unset>')})" for k in keys)
