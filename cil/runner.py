"""From a validated RunConfig to a finished run directory: data, scenario, model, plugins, engine."""

from __future__ import annotations

import random
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cil import registry
from cil.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from cil.config import RunConfig, config_differences
from cil.distributed import SINGLE, World
from cil.data import DATASETS, LoadedDataset, default_backbone
from cil.errors import ReportedInterrupt, RunDiverged, TrainingDiverged, UserError
from cil.loggers import open_loggers
from cil.metrics import confusion_matrix, step_metrics
from cil.output_place import writable_folder
from cil.results import RESULTS, RunWriter, environment, load_results, remove_stale_temporaries
from cil.scenarios import ScenarioName, ScenarioPlan, build_streams


def build_config(scenario: str, strategy: str, flags: dict[str, Any], sets: list[str],
                 overrides: dict[str, Any] | None = None):
    """The validated RunConfig of a scenario, a strategy and options (``--set`` strings and/or an ``overrides``
    dict of dotted or nested keys); impossible scenarios fail before any data loads."""
    from cil.config import assemble, strategy_layers

    name = ScenarioName.parse(scenario, list(DATASETS))
    strategy_layers(strategy)  # an unknown strategy is reported before loading the plugins
    cfg = assemble(scenario=scenario, strategy=strategy, dataset=name.dataset, flags=dict(flags), sets=sets,
                   lookup=registry.config_class, overrides=overrides)
    ScenarioPlan.make(name, DATASETS[name.dataset].count_classes(cfg.data), cfg.class_order_seed)
    check_plugin_combination(cfg)
    return cfg


def check_plugin_combination(cfg: RunConfig) -> None:
    """Refuse, before any data loads, plugins that cannot work together (two batch samplers, two ways of
    predicting, ...: the 'at most one' hooks of cil/plugin.py)."""
    from cil.config import IncompatibleConfigError
    from cil.plugin import PluginHooks

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


def default_out(cfg: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    strategy = Path(cfg.strategy).stem
    return Path("runs") / cfg.scenario / strategy / f"seed{cfg.seed}-{stamp}"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class PreparedRun:
    plan: ScenarioPlan
    data: LoadedDataset
    backbone: str


def prepare(cfg: RunConfig) -> PreparedRun:
    """Load the data and fix the scenario's class order (no model yet)."""
    name = ScenarioName.parse(cfg.scenario, list(DATASETS))
    spec = DATASETS[name.dataset]
    data = spec.load(cfg.data)
    plan = ScenarioPlan.make(name, data.n_classes, cfg.class_order_seed)
    backbone = cfg.model.backbone if cfg.model.backbone != "auto" else default_backbone(spec, data)
    return PreparedRun(plan, data, backbone)


def build_plugins(cfg: RunConfig) -> tuple[object, list[object]]:
    """(classification loss plugin, other plugins in callback order: method, extras)."""
    loss = registry.create("loss", cfg.loss)
    plugins: list[object] = [registry.create("method", cfg.method)]
    plugins += [registry.create("plugin", p) for p in cfg.plugins]
    return loss, plugins


def build_memory(cfg: RunConfig):
    """The run's rehearsal memory (None when exemplar-free), owned by the engine."""
    from cil.memory import Rehearsal

    return Rehearsal(cfg.memory, cfg.seed) if cfg.memory.enabled else None


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM stops a run the way Ctrl-C does (completed steps kept, resume command printed)."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(cfg: RunConfig, *, out: Path | None = None, overwrite: bool = False, resume: bool = False,
        extra_plugins: list | None = None, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
        claim: bool = True) -> dict:
    """Run every step of the scenario and return the final results (also in ``out``/results.json).

    ``resume`` continues the run in ``out`` after its last checkpoint (a fresh start when it has
    none and no completed step). ``extra_plugins`` are appended to the configured ones (Avalanche
    or cil plugins built in code). The run directory is claimed for the run's duration
    (cil/claims.py; ``claim=False`` when the caller holds the claim), so no other process runs it.
    """
    from cil.claims import claimed
    from cil.distributed import join
    from cil.runtime import Runtime

    device = resolve_device(cfg.device)
    world = join(device.type)
    if world.active and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    runtime = Runtime.resolve(cfg.runtime, device, deterministic=cfg.deterministic)
    out = world.share(writable_folder(Path(out) if out is not None else default_out(cfg), "--out"))
    options = dict(overwrite=overwrite, resume=resume, extra_plugins=extra_plugins, world=world)
    if not world.main:  # rank 0 claims, writes and logs for the run
        return _run_in(out, cfg, runtime, log=lambda line: None, **options)
    if not claim:
        return _run_in(out, cfg, runtime, log=log, **options)
    with claimed(out):
        return _run_in(out, cfg, runtime, log=log, **options)


def _run_in(out: Path, cfg: RunConfig, runtime, *, overwrite: bool, resume: bool, extra_plugins: list | None,
            log: Callable[[str], None], world: World = SINGLE) -> dict:
    """``run`` in a claimed directory: open it, build the strategy, train and report every step."""
    from cil.engine import run_steps

    if world.main:
        checkpoint = open_run_directory(out, cfg, overwrite=overwrite, resume=resume, log=log)
        world.barrier()
    else:  # once rank 0 has checked (and, with --overwrite, cleared) the run directory
        world.barrier()
        checkpoint = load_checkpoint(out) if resume else None
    seed_everything(cfg.seed)
    started = time.perf_counter()
    prepared = prepare(cfg)
    plan = prepared.plan
    log(f"{cfg.scenario}: {plan.n_steps} steps ({', '.join(str(len(c)) for c in plan.step_classes)} classes), "
        f"{len(prepared.data.train)} train / {len(prepared.data.test)} test images, loaded in "
        f"{time.perf_counter() - started:.1f}s; strategy {cfg.strategy}, backbone {prepared.backbone}, "
        f"memory {cfg.memory.describe()}, {cfg.optim.epochs} epochs, device {device_description(runtime.device)} "
        f"({runtime.describe()})")
    train_stream, test_stream = build_streams(plan, prepared.data.train.targets, prepared.data.test.targets)
    first_step = checkpoint["state"]["step"] + 1 if checkpoint is not None else 0
    from cil.loggers.plugin import RunLoggers

    run_loggers = RunLoggers([])  # opened below, once the run directory is written
    strategy = build_strategy(cfg, prepared, runtime, [*(extra_plugins or []), run_loggers], log, world)
    if checkpoint is not None:
        try:
            strategy.restore_state(checkpoint["state"])
        except (ValueError, RuntimeError, KeyError) as exc:
            raise UserError(f"cannot resume {out}: its checkpoint does not fit this strategy "
                            f"({str(exc).splitlines()[0]})") from None
    config = cfg.to_dict()
    config["model"]["backbone"] = prepared.backbone
    header = {
        "scenario": cfg.scenario, "strategy": cfg.strategy, "seed": cfg.seed,
        "class_order_seed": cfg.class_order_seed, "class_order": plan.order, "n_steps": plan.n_steps,
        "eval": strategy.evaluation_name, "config": config,
        "env": {**environment(device_description(runtime.device)), "runtime": runtime.to_dict()},
    }
    writer = RunWriter(out, header, overwrite=overwrite or resume,
                       previous=checkpoint["results"] if checkpoint is not None else None, write=world.main)
    log(f"writing {out}" + (f" (resuming after step {first_step - 1})" if checkpoint is not None else ""))
    report = StepReporter(out, plan, strategy, writer, run_loggers, log)
    try:
        run_loggers.loggers = [] if not world.main else open_loggers(
            cfg.logging.loggers, out, config, run_name=f"{cfg.scenario}/{Path(cfg.strategy).stem}/seed{cfg.seed}",
            first_epoch=checkpoint["state"]["epochs_done"] if checkpoint else 0, first_step=first_step,
            wandb_options={"project": cfg.logging.wandb_project, "entity": cfg.logging.wandb_entity,
                           "mode": cfg.logging.wandb_mode})
        with sigterm_as_interrupt(), runtime.backends():
            run_steps(strategy, train_stream, test_stream, report, first_step=first_step)
        writer.finish("complete")
    except KeyboardInterrupt:
        writer.finish("interrupted")
        done = len(writer.results["steps"])
        log(f"interrupted: {done} of {plan.n_steps} steps are saved in {out}; "
            f"continue with: cil run --resume {out}")
        raise ReportedInterrupt from None
    except TrainingDiverged as exc:
        writer.finish("diverged", error=str(exc))
        done = len(writer.results["steps"])
        raise RunDiverged(f"{exc}; the {done} completed step(s) before it are kept in {out} "
                          f"(status diverged)") from None
    except Exception as exc:
        writer.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        run_loggers.finish(writer.results)
    return writer.results


def open_run_directory(out: Path, cfg: RunConfig, *, overwrite: bool, resume: bool,
                       log: Callable[[str], None]) -> dict | None:
    """Check that ``out`` may receive this run; the checkpoint to continue from when resuming."""
    remove_stale_temporaries(out)
    if resume:
        return _checkpoint_to_resume(out, cfg, log)
    if not overwrite and (out / RESULTS).exists():
        raise UserError(f"{out} already holds a run ({RESULTS}); continue it with 'cil run --resume {out}', "
                        f"or choose another --out, or pass --overwrite")
    if overwrite:
        remove_previous_run(out)
    return None


RUN_FILES = (RESULTS, "metrics.csv", "config.yaml", "run.log")
RUN_FOLDERS = ("checkpoints", "confusion", "tensorboard", "logs", "wandb", "plots")
"""What a run writes in its directory (docs/results.md); ``--overwrite`` removes these, nothing else."""


def remove_previous_run(out: Path) -> None:
    """Before ``--overwrite`` starts a new run in ``out``: the old run's files, so that none of them (its
    checkpoint above all) is mistaken for the new run's. Other files in the folder stay."""
    import shutil

    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)


def build_strategy(cfg: RunConfig, prepared: PreparedRun, runtime, extra_plugins: list,
                   log: Callable[[str], None], world: World = SINGLE):
    """The engine with the model, memory and plugins of ``cfg`` (extra plugins after the configured ones)."""
    from cil.engine import IncrementalStrategy
    from cil.models import build_net

    seed_everything(cfg.seed)
    model = build_net(prepared.backbone, cfg.model.head, last_relu=cfg.model.last_relu, shortcut=cfg.model.shortcut,
                      proxies_per_class=cfg.model.proxies_per_class, lsc_similarity=cfg.model.lsc_similarity)
    loss, plugins = build_plugins(cfg)
    if world.active:
        check_data_parallel(cfg)
    return IncrementalStrategy(
        model=model, plan=prepared.plan, train_data=prepared.data.train, test_data=prepared.data.test,
        optim=cfg.optim, loss=loss, plugins=plugins + list(extra_plugins), memory=build_memory(cfg),
        device=runtime.device, seed=cfg.seed, runtime=runtime, progress=cfg.progress and world.main, log=log,
        world=world)


class StepReporter:
    """After every step: its metrics and confusion matrix into the run directory, a checkpoint, a log line."""

    def __init__(self, out: Path, plan: ScenarioPlan, strategy, writer: RunWriter, loggers,
                 log: Callable[[str], None]):
        self.out, self.plan, self.strategy, self.writer = out, plan, strategy, writer
        self.loggers, self.log = loggers, log

    def __call__(self, step: int, scores: np.ndarray, targets: np.ndarray, train_seconds: float,
                 n_train: int) -> None:
        plan, writer = self.plan, self.writer
        metrics = step_metrics(scores, targets, plan.step_classes, step)
        record = {"step": step, "classes": [plan.order[c] for c in plan.step_classes[step]],
                  "labels": plan.step_classes[step], "n_train": n_train, **metrics,
                  "train_seconds": round(train_seconds, 2), **self.strategy.step_record}
        writer.add_step(record, confusion_matrix(scores.argmax(1), targets, plan.n_seen(step)))
        check_ranks_agree(self.strategy, step)
        if writer.write:
            save_checkpoint(self.out, {"state": self.strategy.checkpoint_state(), "results": writer.results,
                                       "config": writer.results["config"]})
        self.loggers.log_step(record, writer.results)
        old = "" if metrics["accuracy_old"] is None else f" old {metrics['accuracy_old']:.2f} /"
        self.log(f"step {step}/{plan.n_steps - 1}: {plan.n_seen(step)} classes, {n_train} train images | "
                 f"acc {metrics['accuracy']:.2f} (base {metrics['accuracy_base']:.2f} /{old} new "
                 f"{metrics['accuracy_new']:.2f}) top5 {metrics['top5']:.2f} | {train_seconds:.1f}s")


def check_data_parallel(cfg: RunConfig) -> None:
    """Refuse, with one line, a strategy with a component that keeps per-process gradient state."""
    components = [("method", cfg.method), ("loss", cfg.loss), *(("plugin", p) for p in cfg.plugins)]
    refused = [c.name for kind, c in components if getattr(registry.component(kind, c.name).factory,
                                                           "data_parallel", True) is False]
    if refused:
        raise UserError(f"{', '.join(refused)} cannot run data-parallel yet (per-process gradient state); "
                        f"run this strategy in one process")


def check_ranks_agree(strategy, step: int) -> None:
    """Data-parallel runs: every rank must hold the same parameters and exemplars after every step."""
    if not strategy.world.active:
        return
    with torch.no_grad():
        checksum = sum(float(p.double().sum()) for p in strategy.model.state_dict().values() if p.is_floating_point())
    memory = strategy.memory_set
    checksum += float(memory.indices.double().sum()) + 1e6 * len(memory)
    if not strategy.world.same_everywhere(checksum):
        raise RuntimeError(f"the ranks of this data-parallel run disagree after step {step} (model or memory)")


def _checkpoint_to_resume(out: Path, cfg: RunConfig, log: Callable[[str], None]) -> dict | None:
    """The checkpoint ``cfg`` continues from (None: start from the first step), or one clear error.

    Steps recorded after the last checkpoint are redone; with no checkpoint at all (the run was
    killed between writing its first step's results and its checkpoint) that is every step.
    """
    saved = saved_results_to_resume(out)
    checkpoint = load_checkpoint(out)
    reference = checkpoint["config"] if checkpoint is not None else saved.get("config", {})
    differing = config_differences(reference, comparable_config(cfg, reference))
    if differing:
        raise UserError(f"cannot resume {out}: the given config differs from the saved one in "
                        f"{', '.join(differing)}")
    if checkpoint is None and saved.get("steps"):
        log(f"{out} records {len(saved['steps'])} step(s) but has no checkpoint ({CHECKPOINT}): "
            f"starting again from step 0")
    return checkpoint


def saved_results_to_resume(run_dir: Path) -> dict:
    """The results.json of a run to resume, or one line saying what is damaged and what to do."""
    from cil.checkpoint import DAMAGED_ADVICE

    if not (run_dir / RESULTS).is_file():
        raise UserError(f"cannot resume {run_dir}: it holds no run ({RESULTS} is missing)")
    try:
        saved = load_results(run_dir)
    except UserError as exc:
        raise UserError(f"cannot resume {run_dir}: {exc}; {DAMAGED_ADVICE}") from None
    if saved["status"] == "diverged":
        raise UserError(f"cannot resume {run_dir}: its training diverged ({saved.get('error', 'no detail')}); "
                        f"resuming would diverge again: start it again with other settings and --overwrite")
    return saved


def comparable_config(cfg: RunConfig, saved: dict) -> dict:
    """``cfg`` as a dict, its 'auto' backbone read as the saved run's resolved one."""
    config = cfg.to_dict()
    if config["model"]["backbone"] == "auto":
        config["model"]["backbone"] = saved["model"]["backbone"]
    return config
