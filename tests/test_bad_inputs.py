"""Bad inputs of every kind end in exit code 2 (or 0) and at most one line, never a traceback.

Generated documents (hypothesis) for every file cil reads, generated values for every ``--set`` key,
and garbage in every option of every subcommand; plus one test per damaged-run and state case of
the robustness issue. ``make test-all`` runs many more generated examples (CIL_HYPOTHESIS_PROFILE).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cil.cli import main
from cil.cli.parser import build_parser
from cil.runs.assemble import build_config
from cil.runs.run import run
from tests.helpers import StopBeforeStep, quiet

TINY = [
    "--epochs",
    "1",
    "--limit-per-class",
    "6",
    "--no-progress",
    "--logger",
    "none",
    "--set",
    "model.backbone=tiny",
    "--set",
    "data.synthetic_classes=10",
    "--set",
    "data.test_limit_per_class=2",
    "--set",
    "optim.batch_size=8",
]
SETS = [s for s in TINY[8:] if s != "--set"]
FLAGS = {"epochs": 1, "device": "cpu", "progress": False, "data": {"limit_per_class": 6}, "logging": {"loggers": []}}

WORDS = [
    "il-baseline",
    "il-baseline-bsce",
    "podnet",
    "bsce",
    "synthetic-b6-2",
    "synthetic-b50-5",
    "1993",
    "0.1",
    "memory",
    "per_class",
    "tiny",
    "x.yaml",
    "",
    "complete",
    "interrupted",
]
KEYS = [
    "extends",
    "description",
    "profiles",
    "method",
    "loss",
    "plugins",
    "memory",
    "model",
    "optim",
    "data",
    "runtime",
    "logging",
    "name",
    "lr",
    "epochs",
    "per_class",
    "budget",
    "alpha",
    "backbone",
    "imagenet",
    "sweeps",
    "grid",
    "seeds",
    "scenarios",
    "strategies",
    "set",
    "scenario",
    "strategy",
    "config",
    "steps",
    "status",
    "step",
    "accuracy",
    "accuracy_per_group",
    "top5",
    "accuracy_base",
    "accuracy_old",
    "accuracy_new",
    "seed",
    "n_steps",
    "avg_incremental_accuracy",
    "final_accuracy",
    "forgetting",
    "class_order",
    "format",
    "state",
    "results",
    "head_groups",
    "plugins",
    "rng",
    "epochs_done",
]
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-3, 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(WORDS)
    | st.text(max_size=8)
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=14,
)
DOCUMENTS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=7) | VALUES
"""Mostly mappings of cil's own keys (so that checks past the first level are reached), sometimes anything."""
STRATEGY_KEYS = [
    "extends",
    "description",
    "profiles",
    "method",
    "loss",
    "plugins",
    "memory",
    "model",
    "optim",
    "data",
    "runtime",
    "logging",
]
SWEEP_KEYS = ["description", "seeds", "scenarios", "strategies", "grid", "sweeps", "set"]
STRATEGY_DOCUMENTS = st.dictionaries(st.sampled_from(STRATEGY_KEYS), VALUES, max_size=5) | DOCUMENTS
SWEEP_DOCUMENTS = st.dictionaries(st.sampled_from(SWEEP_KEYS), VALUES, max_size=5) | DOCUMENTS
"""Only a file kind's own top-level keys (most cases pass the unknown-key check), or anything."""


def one_line_or_success(code: int, err: str) -> None:
    assert code in (0, 2), err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cil: error: "), err
    assert "Traceback" not in err


def cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def write_yaml(path: Path, document) -> Path:
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


# ------------------------------------------------------------------------------------ files (family 2)


@given(document=STRATEGY_DOCUMENTS)
def test_generated_strategy_files(tmp_path_factory, capsys, document):
    folder = tmp_path_factory.mktemp("strategy")
    path = write_yaml(folder / "s.yaml", document)
    code, err = cli(
        capsys, "sweep", "--scenario", "synthetic-b6-2", "--strategy", path, "--dry-run", "--out", folder / "out"
    )
    one_line_or_success(code, err)


@given(document=SWEEP_DOCUMENTS)
def test_generated_sweep_files(tmp_path_factory, capsys, document):
    folder = tmp_path_factory.mktemp("sweep")
    path = write_yaml(folder / "plan.yaml", document)
    code, err = cli(capsys, "sweep", path, "--dry-run", "--out", folder / "out")
    one_line_or_success(code, err)


def test_binary_files_are_one_line(tmp_path, capsys):
    blob = bytes(range(256)) * 4
    for name in ("s.yaml", "plan.yaml"):
        (tmp_path / name).write_bytes(blob)
    code, err = cli(capsys, "run", "--scenario", "synthetic-b6-2", "--strategy", tmp_path / "s.yaml")
    assert (code, err.strip()) == (2, f"cil: error: cannot read {tmp_path / 's.yaml'}: not a text (UTF-8) file")
    code, err = cli(capsys, "sweep", tmp_path / "plan.yaml", "--dry-run")
    assert code == 2 and "not a text (UTF-8) file" in err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    run(build_config("synthetic-b6-2", "il-baseline-bsce", FLAGS, SETS), out=out, log=quiet)
    return out


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(KeyboardInterrupt):
        run(
            build_config("synthetic-b6-2", "il-baseline-bsce", FLAGS, SETS),
            out=out,
            extra_plugins=[StopBeforeStep(2)],
            log=quiet,
        )
    return out


class Reached(Exception):
    """Raised by a stand-in for the training loop: the input was accepted."""


@given(document=DOCUMENTS)
def test_generated_results_files(tmp_path_factory, capsys, monkeypatch, finished_run, document):
    """cil report and plot list or refuse any results.json; --resume refuses it before training or accepts it."""
    folder = tmp_path_factory.mktemp("results")
    run_dir = folder / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "results.json").write_text(json.dumps(document))
    for argv in (
        ["report", run_dir, "--metric", "all"],
        ["report", run_dir, "--per-step"],
        ["plot", run_dir, "--kind", "all", "--out", folder / "plots"],
    ):
        one_line_or_success(*cli(capsys, *argv))

    def accepted(*args, **kwargs):
        raise Reached

    monkeypatch.setattr("cil.runs.run.run", accepted)
    try:
        code, err = cli(capsys, "run", "--resume", run_dir)
    except Reached:
        return
    one_line_or_success(code, err)


@given(
    payload=st.fixed_dictionaries(
        {"format": st.just(1) | LEAVES},
        optional={
            "state": VALUES
            | st.fixed_dictionaries(
                {}, optional={k: VALUES for k in ("step", "head_groups", "model", "plugins", "rng", "epochs_done")}
            ),
            "results": VALUES,
            "config": VALUES,
        },
    )
    | VALUES
)
def test_generated_checkpoints(tmp_path_factory, capsys, interrupted_run, payload):
    folder = tmp_path_factory.mktemp("checkpoint")
    run_dir = folder / "run"
    shutil.copytree(interrupted_run, run_dir)
    torch.save(payload, run_dir / "checkpoints" / "last.pt")
    code, err = cli(capsys, "run", "--resume", run_dir)
    one_line_or_success(code, err)
    assert code == 2 and "cannot resume" in err


# ------------------------------------------------------------------------------------ values (family 1)


def all_set_keys() -> list[str]:
    """Every key ``--set`` accepts for a strategy with a method, a loss and an extra plugin."""
    from cil.config import flatten

    config = build_config("synthetic-b6-2", "podnet-meta-bsce", {"add_plugins": ["gala"]}, []).to_dict()
    return sorted(k for k in flatten(config) if k not in ("scenario", "strategy"))


SET_VALUES = (
    st.sampled_from(
        [
            "-1",
            "0",
            "1e309",
            "-inf",
            ".nan",
            "nan",
            "[]",
            "{}",
            "[1, x]",
            "null",
            "true",
            "x" * 200,
            "1,2,,3",
            "🙂",
            "0x10",
            "1_000",
            "~",
            "'1'",
            "1.5",
            "-0.0",
        ]
    )
    | st.text(max_size=10)
    | st.integers().map(str)
    | st.floats().map(str)
)


@given(key=st.sampled_from(all_set_keys()), value=SET_VALUES)
def test_generated_set_values(tmp_path_factory, capsys, key, value):
    out = tmp_path_factory.mktemp("set")
    code, err = cli(
        capsys,
        "sweep",
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        "podnet-meta-bsce",
        "--plugin",
        "gala",
        "--set",
        f"{key}={value}",
        "--dry-run",
        "--out",
        out,
    )
    one_line_or_success(code, err)


# ------------------------------------------------------------------------------------ every option


GARBAGE = ["", "-1", "nan", "1e309", "x" * 300, "a,b,,c", "\x00", "/proc/cil/x", "🙂", "0"]


def options_of(command: str) -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return [a.option_strings[-1] for a in sub._actions if a.option_strings and a.nargs != 0 and a.dest not in ("help",)]


BASE = {
    "run": ["run", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline"],
    "sweep": ["sweep", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline", "--dry-run"],
    "report": ["report"],
    "plot": ["plot"],
    "describe": ["describe", "--scenario", "synthetic-b6-2"],
}


def garbage_argv(command: str, option: str, value: str, run_dir: Path, out: Path) -> list[str]:
    """A valid ``command`` line (report and plot read ``run_dir``) with ``option value`` added."""
    argv = [*BASE[command], option, value]
    if command in ("report", "plot"):
        argv.insert(1, str(run_dir))
    if command in ("sweep", "plot") and option != "--out":
        argv += ["--out", str(out)]
    return argv


@pytest.mark.parametrize("command, option", [(c, o) for c in BASE for o in options_of(c)])
def test_garbage_in_every_option(tmp_path, capsys, monkeypatch, finished_run, command, option):
    """Each option of each subcommand given each garbage value: exit 0 or 2 with one line, never a traceback."""

    def accepted(*args, **kwargs):
        raise Reached

    monkeypatch.setattr("cil.runs.run.run", accepted)
    monkeypatch.chdir(tmp_path)
    refused = 0
    for value in GARBAGE:
        try:
            code, err = cli(capsys, *garbage_argv(command, option, value, finished_run, tmp_path / "out"))
        except Reached:
            continue
        one_line_or_success(code, err)
        refused += code == 2
    if option != "--data-root":  # the synthetic dataset reads no files: any --data-root is ignored
        assert refused >= 1  # every other option refuses some garbage


# ------------------------------------------------------------------------------------ damaged runs (family 4)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[]", "the file must be a JSON object, got a list"),
        ("null", "the file must be a JSON object, got null"),
        ("{}", "key 'scenario' is missing"),
        ('{"scenario": "s", "strategy": "t", "steps": [], "status": "interrupted"}', "key 'config' is missing"),
        ("{broken", "cannot read"),
    ],
)
def test_resume_of_damaged_results_says_what_to_do(tmp_path, capsys, interrupted_run, text, message):
    run_dir = tmp_path / "run"
    shutil.copytree(interrupted_run, run_dir)
    (run_dir / "results.json").write_text(text)
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    code, err = cli(capsys, "run", "--resume", run_dir)
    assert code == 2 and message in err and err.count("\n") == 1
    assert "restore it from a backup, or start the run again with --overwrite (nothing was deleted)" in err
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before


def test_resume_of_a_checkpoint_lacking_keys(tmp_path, capsys, interrupted_run):
    run_dir = tmp_path / "run"
    shutil.copytree(interrupted_run, run_dir)
    payload = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    del payload["state"]["rng"]
    torch.save(payload, run_dir / "checkpoints" / "last.pt")
    code, err = cli(capsys, "run", "--resume", run_dir)
    assert code == 2 and "key 'state.rng' is missing" in err and "--overwrite" in err


# ------------------------------------------------------------------------------------ state (family 6)


def test_overwrite_removes_the_old_runs_checkpoint(tmp_path, capsys, finished_run):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "notes.txt").write_text("mine")

    class Killed(Exception):
        pass

    class KillBeforeFirstCheckpoint(StopBeforeStep):
        def before_training_exp(self, strategy, **kwargs):
            raise Killed  # as if SIGKILLed before step 0 ended

    with pytest.raises(Killed):
        run(
            build_config("synthetic-b6-2", "il-baseline", FLAGS, SETS),
            out=run_dir,
            overwrite=True,
            extra_plugins=[KillBeforeFirstCheckpoint(0)],
            log=quiet,
        )
    assert not (run_dir / "checkpoints" / "last.pt").exists() and (run_dir / "notes.txt").exists()
    resumed = run(build_config("synthetic-b6-2", "il-baseline", FLAGS, SETS), out=run_dir, resume=True, log=quiet)
    assert resumed["status"] == "complete" and resumed["strategy"] == "il-baseline"


def test_set_cannot_relabel_the_strategy(capsys):
    code, err = cli(
        capsys, "run", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline", "--set", "strategy=lucir"
    )
    assert code == 2 and "'strategy' names the run and is chosen with --strategy" in err


@pytest.mark.parametrize("argv", [["--grid", "memory=,"], ["--grid", "loss.alpha= , "]])
def test_empty_grid_is_refused(tmp_path, capsys, argv):
    code, err = cli(
        capsys,
        "sweep",
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        "il-baseline",
        *argv,
        "--dry-run",
        "--out",
        tmp_path,
    )
    assert code == 2 and "no values" in err


def test_empty_grid_in_a_file_is_refused(tmp_path, capsys):
    path = write_yaml(
        tmp_path / "plan.yaml", {"scenarios": ["synthetic-b6-2"], "strategies": ["il-baseline"], "grid": {"memory": []}}
    )
    code, err = cli(capsys, "sweep", path, "--dry-run", "--out", tmp_path / "out")
    assert code == 2 and "'grid.memory' must be a single value or a non-empty list" in err


def test_sweep_lists_refused_combinations_and_runs_the_others(tmp_path, capsys):
    code, err = cli(
        capsys,
        "sweep",
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        "il-baseline-meta-bsce",
        "--grid",
        "memory_budget=3,40",
        *TINY,
        "--out",
        tmp_path,
    )
    assert code == 0, err
    assert "1 to run, 0 to resume, 0 complete, 1 invalid" in err and "needs a memory of at least 2" in err
    assert (
        tmp_path / "synthetic-b6-2" / "il-baseline-meta-bsce" / "memory.budget=40" / "seed1993" / "results.json"
    ).exists()


def test_a_diverging_run_stops_and_says_where(tmp_path, capsys):
    code, err = cli(
        capsys,
        "run",
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        "il-baseline",
        *TINY,
        "--set",
        "optim.lr=1e12",
        "--epochs",
        "2",
        "--out",
        tmp_path / "run",
    )
    assert code == 3, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("cil: error: training diverged at step ") and "loss part '" in line
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "diverged" and "diverged at step" in results["error"]
    assert len(results["steps"]) == int(line.split("at step ")[1].split(",")[0])  # the completed steps are kept
    code, err = cli(capsys, "run", "--resume", tmp_path / "run")
    assert code == 2 and "would diverge again" in err
    code, err = cli(capsys, "report", tmp_path / "run")
    assert code == 0


def test_non_finite_numbers_are_refused(capsys):
    for value in ("inf", "-inf", ".nan", "1e309"):
        code, err = cli(
            capsys, "run", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline", "--set", f"optim.lr={value}"
        )
        assert code == 2 and "expected a finite number" in err


def test_stale_temporaries_are_removed_at_the_next_start(tmp_path, interrupted_run):
    from cil.files import TEMPORARY_MARK

    run_dir = tmp_path / "run"
    shutil.copytree(interrupted_run, run_dir)
    stale = [run_dir / f".results.json{TEMPORARY_MARK}abcd1234", run_dir / "checkpoints" / f".last.pt{TEMPORARY_MARK}x"]
    for path in stale:
        path.write_bytes(b"half")
    (run_dir / ".keep-me").write_text("not ours")
    run(build_config("synthetic-b6-2", "il-baseline-bsce", FLAGS, SETS), out=run_dir, resume=True, log=quiet)
    assert not any(p.exists() for p in stale) and (run_dir / ".keep-me").exists()


def test_num_workers_default_to_the_cpus_available(monkeypatch):
    from cil.config import DataConfig

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert DataConfig().worker_count() == 2
    assert DataConfig(num_workers=5).worker_count() == 5
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)))
    assert DataConfig().worker_count() == 8
