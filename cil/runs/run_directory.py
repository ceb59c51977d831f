"""A run directory's life: its default place, checks before a run writes into it, what ``--overwrite``
removes, and what ``--resume`` continues from."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from cil.config import RunConfig, config_differences, strategy_label
from cil.errors import UserError
from cil.files import planted_link, refused_writes, remove_stale_temporaries
from cil.processes import command_line
from cil.runs.checkpoint import CHECKPOINT, load_checkpoint
from cil.runs.results import RESULTS, load_results

RUNS = Path("runs")
"""Where runs and sweeps go when no --out is given (relative to the working directory)."""


def default_run_dir(scenario: str, strategy: str, seed: int | None = None) -> Path:
    """runs/SCENARIO/STRATEGY/seedS-TIME for one run; without ``seed``, runs/SCENARIO/STRATEGY/seeds-TIME, the
    parent of one folder per seed."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = f"seed{seed}-{stamp}" if seed is not None else f"seeds-{stamp}"
    return RUNS / scenario / strategy_label(strategy) / folder


def default_sweep_dir(name: str) -> Path:
    """runs/sweeps/NAME."""
    return RUNS / "sweeps" / name


def open_run_directory(
    out: Path, cfg: RunConfig, *, overwrite: bool, resume: bool, log: Callable[[str], None]
) -> dict | None:
    """Check that ``out`` may receive this run; the checkpoint to continue from when resuming."""
    refuse_links(out)
    remove_stale_temporaries(out)
    if resume:
        return _checkpoint_to_resume(out, cfg, log)
    if not overwrite and (out / RESULTS).exists():
        raise UserError(
            f"{out} already holds a run ({RESULTS}); continue it with: {command_line('run', '--resume', out)}; "
            f"or choose another --out, or pass --overwrite"
        )
    if overwrite:
        remove_previous_run(out)
    return None


RUN_FILES = (RESULTS, "metrics.csv", "config.yaml", "run.log")


RUN_FOLDERS = ("checkpoints", "confusion", "tensorboard", "logs", "wandb", "plots")
"""What a run writes in its directory (docs/results.md); ``--overwrite`` removes these, nothing else."""


def refuse_links(out: Path) -> None:
    """One UserError when a file or folder the run writes in ``out`` (or anything under those folders) is a
    symbolic link: removing, appending and creating folders would act on what it points to, anywhere on the
    machine. ``out`` itself may be a link (a run directory on scratch space); what cil writes inside may not."""
    link = planted_link(out, RUN_FILES + RUN_FOLDERS)
    if link is not None:
        raise UserError(
            f"{link} is a symbolic link; cil does not write through links inside a run directory "
            f"(they may point anywhere): remove it, or choose another --out"
        )


def remove_previous_run(out: Path) -> None:
    """Before ``--overwrite`` starts a new run in ``out``: the old run's files, so that none of them (its
    checkpoint above all) is mistaken for the new run's. Other files in the folder stay."""
    import shutil

    for name in RUN_FILES:
        with refused_writes(out / name):
            (out / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        if (out / name).exists():
            with refused_writes(out / name):
                shutil.rmtree(out / name)


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
        raise UserError(f"cannot resume {out}: the given config differs from the saved one in {', '.join(differing)}")
    if checkpoint is None and saved.get("steps"):
        log(
            f"{out} records {len(saved['steps'])} step(s) but has no checkpoint ({CHECKPOINT}): "
            f"starting again from step 0"
        )
    return checkpoint


def saved_results_to_resume(run_dir: Path) -> dict:
    """The results.json of a run to resume, or one line saying what is damaged and what to do."""
    from cil.runs.checkpoint import DAMAGED_ADVICE

    refuse_links(run_dir)
    if not (run_dir / RESULTS).is_file():
        raise UserError(f"cannot resume {run_dir}: it holds no run ({RESULTS} is missing)")
    try:
        saved = load_results(run_dir)
    except UserError as exc:
        raise UserError(f"cannot resume {run_dir}: {exc}; {DAMAGED_ADVICE}") from None
    if saved["status"] == "diverged":
        raise UserError(
            f"cannot resume {run_dir}: its training diverged ({saved.get('error', 'no detail')}); "
            f"resuming would diverge again: start it again with other settings and --overwrite"
        )
    return saved


def comparable_config(cfg: RunConfig, saved: dict) -> dict:
    """``cfg`` as a dict, its 'auto' backbone read as the saved run's resolved one."""
    config = cfg.to_dict()
    if config["model"]["backbone"] == "auto":
        config["model"]["backbone"] = saved["model"]["backbone"]
    return config
