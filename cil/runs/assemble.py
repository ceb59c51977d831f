"""From a validated RunConfig to an engine ready to train: data, scenario plan, model, memory, plugins.

Everything a run's config is checked against before any data loads lives here too (the plugin
combination, data-parallel support), so that every entry point (CLI, API, sweeps) refuses the
same things with the same line.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cil import registry
from cil.config import RunConfig
from cil.data import (
    LoadedDataset,
    default_backbone,
    parse_scenario,
    planned_train_counts,
    scenario_plan,
    with_imbalance,
)
from cil.data.scenarios import ScenarioPlan
from cil.errors import UserError
from cil.training.contract import CilPlugin, ClassificationLoss
from cil.training.distributed import SINGLE, World


def build_config(
    scenario: str, strategy: str, flags: dict[str, Any], sets: list[str], overrides: dict[str, Any] | None = None
):
    """The validated RunConfig of a scenario, a strategy and options (``--set`` strings and/or an ``overrides``
    dict of dotted or nested keys); impossible scenarios fail before any data loads."""
    from cil.config import assemble, strategy_layers

    name, _ = parse_scenario(scenario)
    strategy_layers(strategy)  # an unknown strategy is reported before loading the plugins
    cfg = assemble(
        scenario=scenario,
        strategy=strategy,
        dataset=name.dataset,
        flags=dict(flags),
        sets=sets,
        lookup=registry.config_class,
        overrides=overrides,
    )
    plan = scenario_plan(scenario, cfg.data, cfg.class_order_seed)  # an impossible split: one line, before any data
    check_data_options(cfg, plan)
    check_plugin_combination(cfg)
    step_notes(cfg, plan)
    return cfg


def step_notes(cfg: RunConfig, plan: ScenarioPlan) -> list[str]:
    """What each component says of the scenario's step sizes: a refusal (raised) or notes to print once (a
    distillation that is constant on one-class steps)."""
    sizes = [len(classes) for classes in plan.step_classes]
    components = [("method", cfg.method), ("loss", cfg.loss), *((f"plugins.{p.name}", p) for p in cfg.plugins)]
    return [note for prefix, component in components for note in component.check_steps(sizes, prefix)]


def check_data_options(cfg: RunConfig, plan: ScenarioPlan) -> None:
    """Refuse, before any data loads, a data option the dataset cannot take: image lists for a dataset that is no
    folder, an imbalance profile that leaves a class without images (datasets whose counts are known), a fixed
    memory smaller than the scenario's classes (no exemplar left per class at the end)."""
    from cil.config import IncompatibleConfigError

    _, spec = parse_scenario(cfg.scenario)
    lists = [key for key in ("train_list", "test_list") if getattr(cfg.data, key) is not None]
    if lists and not spec.takes_lists:
        raise IncompatibleConfigError(
            f"data.{lists[0]} names the images of a folder dataset (folder, imagenet, imagenet-subset), "
            f"not of {spec.name}"
        )
    if cfg.data.test_list is not None and cfg.data.train_list is None:
        raise IncompatibleConfigError("data.test_list needs data.train_list (the list that numbers the classes)")
    if cfg.data.imbalance is not None and not spec.takes_lists:  # counts known without reading a folder
        planned_train_counts(spec, cfg.data, plan)
    used = plan.n_seen(plan.n_steps - 1)
    if cfg.memory.budget is not None and cfg.memory.budget < used:
        raise IncompatibleConfigError(
            f"--memory-budget {cfg.memory.budget} keeps no exemplar of a class once the scenario's {used} classes "
            f"are seen: give at least {used} (or --memory 0 for none)"
        )


def check_plugin_combination(cfg: RunConfig) -> None:
    """Refuse, before any data loads, plugins that cannot work together (two batch samplers, two ways of
    predicting, ...: the 'at most one' hooks of cil/training/contract.py)."""
    from cil.config import IncompatibleConfigError
    from cil.training.contract import PluginHooks

    try:
        PluginHooks(build_plugins(cfg)[1])
    except UserError as exc:
        raise IncompatibleConfigError(str(exc)) from None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class PreparedRun:
    plan: ScenarioPlan
    data: LoadedDataset
    backbone: str
    imbalance: Any = None
    """The ``ImbalancedSplit`` of an imbalanced run (cil/data/imbalance.py): what its training set kept."""

    @property
    def train_counts(self) -> list[int]:
        """Training images of every label (the data as loaded, imbalance applied)."""
        inverse = np.empty(self.plan.n_classes, dtype=np.int64)
        inverse[self.plan.order] = np.arange(self.plan.n_classes)
        return np.bincount(inverse[self.data.train.targets], minlength=self.plan.n_classes).tolist()


def prepare(cfg: RunConfig, loaded: dict | None = None) -> PreparedRun:
    """Load the data and fix the scenario's class order (no model yet). ``loaded``: datasets loaded by earlier
    runs of the same process (``run_seeds``), reused when the dataset and its data options are the same (a run
    only reads its data)."""
    _, spec = parse_scenario(cfg.scenario)
    key = (spec.name, repr(dataclasses.replace(cfg.data, imbalance=None, imbalance_seed=0)))  # before the cut
    if loaded is not None and key in loaded:
        data = loaded[key]
    else:
        data = spec.load(cfg.data)
        if loaded is not None:
            loaded.clear()  # one dataset held at a time
            loaded[key] = data
    plan = scenario_plan(cfg.scenario, cfg.data, cfg.class_order_seed, n_classes=data.n_classes)
    data, split = with_imbalance(data, cfg.data, plan)  # the cache keeps the whole set: each run cuts its own
    backbone = cfg.model.backbone if cfg.model.backbone != "auto" else default_backbone(spec, data)
    return PreparedRun(plan, data, backbone, split)


def build_plugins(cfg: RunConfig) -> tuple[ClassificationLoss, list[CilPlugin]]:
    """(classification loss, other components in hook order: method, extra plugins)."""
    loss = registry.create("loss", cfg.loss)
    plugins: list[CilPlugin] = [registry.create("method", cfg.method)]
    plugins += [registry.create("plugin", p) for p in cfg.plugins]
    return loss, plugins


def build_memory(cfg: RunConfig):
    """The run's rehearsal memory (None when exemplar-free), owned by the engine."""
    from cil.training.memory import Rehearsal

    return Rehearsal(cfg.memory, cfg.seed) if cfg.memory.enabled else None


def build_strategy(
    cfg: RunConfig,
    prepared: PreparedRun,
    runtime,
    extra_plugins: list,
    log: Callable[[str], None],
    world: World = SINGLE,
    on_epoch=None,
):
    """The engine with the model, memory and components of ``cfg``. ``extra_plugins`` built in code come
    after the configured ones: cil components (``CilPlugin``) join the strategy's components, anything else
    is an Avalanche plugin and receives Avalanche's callbacks."""
    from cil.models import build_net
    from cil.training.engine import TrainingEngine

    seed_everything(cfg.seed)
    model = build_net(
        prepared.backbone,
        cfg.model.head,
        last_relu=cfg.model.last_relu,
        shortcut=cfg.model.shortcut,
        proxies_per_class=cfg.model.proxies_per_class,
        lsc_similarity=cfg.model.lsc_similarity,
        head_bias=cfg.model.head_bias,
    )
    loss, plugins = build_plugins(cfg)
    if world.active:
        check_data_parallel(cfg)
    components = [p for p in extra_plugins if isinstance(p, CilPlugin)]
    return TrainingEngine(
        model=model,
        plan=prepared.plan,
        train_data=prepared.data.train,
        test_data=prepared.data.test,
        optim=cfg.optim,
        loss=loss,
        plugins=plugins + components,
        memory=build_memory(cfg),
        device=runtime.device,
        seed=cfg.seed,
        runtime=runtime,
        progress=cfg.progress and world.main,
        log=log,
        world=world,
        avalanche_plugins=[p for p in extra_plugins if not isinstance(p, CilPlugin)],
        on_epoch=on_epoch,
    )


def check_data_parallel(cfg: RunConfig) -> None:
    """Refuse, with one line, a strategy with a component that keeps per-process gradient state."""
    components = [("method", cfg.method), ("loss", cfg.loss), *(("plugin", p) for p in cfg.plugins)]
    refused = [
        c.name
        for kind, c in components
        if getattr(registry.component(kind, c.name).factory, "data_parallel", True) is False
    ]
    if refused:
        raise UserError(
            f"{', '.join(refused)} cannot run data-parallel yet (per-process gradient state); "
            f"run this strategy in one process"
        )
