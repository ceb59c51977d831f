"""Count faults from outside cil that end badly, by family: the evidence for the faults work, run against any cil
tree (copy this file and tests/test_faults.py into an older checkout to count "before").

    python -m tests.census_faults [N]        # N generated cases per generated family (default 200)

Families: every write of a small run refused by the OS (each point x ENOSPC, EROFS, EACCES); links planted where
a run writes (each name x new run, --overwrite, --resume); claim files cil did not write (generated); strategy and
sweep names that try to leave configs/ (generated); values that pass the old checks and fail later (every count
x huge values, Slurm options, --wait without a launcher); combinations and typos that must be refused before any
data (issue 35's items 3, 10, 11, 15); deaths in data-parallel runs (each rank, the launcher).
A case ends well when it ends in one line and the exit code cil documents (and, for refused writes, when the run
then finishes with the uninterrupted run's accuracies; for links, when what the link points to is unchanged).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cil.cli import main
from tests.census_bad_inputs import census_settings, print_table
from tests.helpers import plant_old_file
from tests.test_faults import PLANTED, TINY, WriteRefuser, plant, refusing, untouched

REPO = Path(__file__).resolve().parent.parent


LAST_CODE = [0]


def attempt(argv: list, expected: tuple[int, ...] = (0, 2)) -> tuple[str, str]:
    """(outcome, stderr) of ``cil ARGV`` in this process: 'ok', or how it ended badly (its exit code in
    LAST_CODE)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = LAST_CODE[0] = main([str(a) for a in argv])
    except BaseException as exc:
        LAST_CODE[0] = -1
        return f"traceback ({type(exc).__name__})", err.getvalue()
    errors = [line for line in err.getvalue().splitlines() if line.startswith("cil: error: ")]
    if code not in expected:
        return f"exit {code}", err.getvalue()
    if code != 0 and (len(errors) != 1 or "Traceback" in err.getvalue()):
        return "not one line", err.getvalue()
    return "ok", err.getvalue()


def accuracies(run_dir: Path) -> list[float] | None:
    try:
        results = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return [s["accuracy"] for s in results["steps"]] if results.get("status") == "complete" else None


def refused_writes(work: Path, count) -> None:
    reference = work / "reference"
    with refusing(WriteRefuser(reference)) as counted:
        assert attempt(["run", *TINY, "--out", reference])[0] == "ok"
    expected = accuracies(reference)
    for k in range(1, len(counted.points) + 1):
        for code in (errno.ENOSPC, errno.EROFS, errno.EACCES):
            out = work / f"w{k}-{code}"
            with refusing(WriteRefuser(out, fail_at=k, code=code)):
                outcome, err = attempt(["run", *TINY, "--out", out], expected=(0, 74))
            if outcome != "ok" and os.environ.get("CENSUS_VERBOSE"):
                print(k, code, err.strip()[-300:], file=sys.stderr)
            if outcome == "ok":
                again = ["run", "--resume", out] if "--resume" in err else ["run", *TINY, "--out", out]
                if "cil: error:" in err:
                    attempt(again)
                if accuracies(out) != expected:
                    outcome = "lost or not resumable"
            count("every write refused in turn (ENOSPC, EROFS, EACCES)", outcome)
            shutil.rmtree(out, ignore_errors=True)


def planted_links(work: Path, count) -> None:
    for name in PLANTED + ["confusion/step_01.npy", "checkpoints/last.pt"]:
        for how in ("new", "--overwrite", "--resume"):
            case = Path(tempfile.mkdtemp(dir=work))
            out, victim = case / "run", case / "victim"
            if how != "new":
                attempt(["run", *TINY, "--out", out])
                target = out / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
            plant(out, name, victim)
            argv = ["run", "--resume", out] if how == "--resume" else ["run", *TINY, "--out", out]
            outcome, _ = attempt(argv + (["--overwrite"] if how == "--overwrite" else []))
            if not untouched(victim):
                outcome = "wrote or deleted through the link"
            count("links planted where a run writes", outcome)
            shutil.rmtree(case, ignore_errors=True)


PIDS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 4_194_304, 4_194_305]),
    st.text(max_size=8),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
CLAIMS = st.one_of(
    st.fixed_dictionaries(
        {"host": st.one_of(st.just(os.uname().nodename), st.text(max_size=8), st.integers()), "pid": PIDS},
        optional={"started": st.one_of(st.none(), st.text(max_size=4), st.integers()), "since": st.text(max_size=4)},
    ).map(json.dumps),
    st.text(max_size=30),
    st.binary(max_size=30),
    st.sampled_from(["directory", "link"]),
)


def claim_files(work: Path, count, every) -> None:
    @every
    @given(content=CLAIMS)
    def case(content):
        run_dir = Path(tempfile.mkdtemp(dir=work)) / "run"
        run_dir.mkdir()
        plant_old_file(run_dir / ".claim", content, work / "nowhere")
        argv = ["run", "--scenario", "synthetic-b4-1", "--strategy", "finetune", "--out", run_dir, *TINY[4:]]
        count("claim files cil did not write", attempt(argv)[0])
        shutil.rmtree(run_dir.parent, ignore_errors=True)

    case()


def escaping_names(work: Path, count, every) -> None:
    from cil.config import config_root

    planted = [config_root() / "planted.yaml", config_root().parent / "planted.yaml"]
    for path in planted:
        path.write_text("description: planted outside the named ones\n")
    os.chdir(work)
    try:

        @every
        @given(
            ups=st.integers(0, 4),
            dots=st.sampled_from(["..", ".", "...", "~"]),
            name=st.sampled_from(["planted", "planted.yaml", "strategies/../planted", "il-baseline"]),
            command=st.sampled_from(["strategy", "sweep"]),
        )
        def case(ups, dots, name, command):
            ref = "/".join([dots] * ups + [name]) if ups else name
            argv = (
                ["sweep", "--scenario", "synthetic-b4-1", "--strategy", ref, "--dry-run", "--out", work / "o"]
                if command == "strategy"
                else ["sweep", ref, "--dry-run", "--out", work / "o"]
            )
            outcome, _ = attempt(argv)
            if outcome == "ok" and LAST_CODE[0] == 0 and "planted" in ref and not (work / ref).is_file():
                outcome = "read a file outside configs/ by name"
            count("names that try to leave configs/", outcome)

        case()
    finally:
        for path in planted:
            path.unlink(missing_ok=True)


def late_values(work: Path, count) -> None:
    from tests.test_config import UNBOUNDED_COUNTS, integer_counts

    keys = []
    for key, _ in integer_counts():
        kind, _, rest = key.partition(".")
        if key in UNBOUNDED_COUNTS or kind == "plugin":
            continue  # plugins are set through a strategy's list; their counts have the same ranges
        keys.append(f"{kind}.{rest.split('.', 1)[1]}" if kind in ("method", "loss") else key)
    keys = list(dict.fromkeys(keys))
    for key in keys:
        strategy = {"method": "lucir", "loss": "podnet-meta-bsce"}.get(key.split(".")[0], "il-baseline")
        for value in ("1000000000000", "99999999999999999999"):
            argv = ["sweep", "--scenario", "synthetic-b4-1", "--strategy", strategy, "--set", f"{key}={value}"]
            outcome, err = attempt([*argv, "--dry-run", "--out", work / "o"])
            if outcome == "ok":
                refused = f"invalid value for '{key}'" in err
                outcome = "ok" if refused else "accepted at the edge (fails or runs on later)"
                if not refused and os.environ.get("CENSUS_VERBOSE"):
                    print(key, value, err.strip()[-200:], file=sys.stderr)
            count("huge counts (every count of the config x 2 values)", outcome)
    sweep = ["sweep", "--scenario", "synthetic-b4-1", "--strategy", "finetune", "--dry-run", "--out", work / "o"]
    for option in ["--slurm-time", "--slurm-mem-gb", "--slurm-cpus-per-job", "--slurm-array-parallelism"]:
        for value in ("99999999999999999999", "1000000000"):
            outcome, err = attempt([*sweep, option, value])
            if outcome == "ok" and "cil: error" not in err:
                outcome = "accepted (submitted as is)"
            count("Slurm options and --wait", outcome)
    outcome, err = attempt([*sweep, "--wait"])
    count("Slurm options and --wait", "silently ignored" if "cil: error" not in err else outcome)


def refused_before_data(work: Path, count) -> None:
    """Issue 35's faults of the week: combinations refused only after training (items 10, 3), stage schedules
    run as given (11), typos in a strategy file's profiles or --seeds accepted (15), an over-long W&B tag refused
    by W&B once the run started (15). Each must be one line and exit 2 from a dry run, before any data."""
    import yaml

    strategy_file = work / "typo.yaml"
    strategy_file.write_text(yaml.safe_dump({"extends": "il-baseline", "profiles": {"cifarr": {"optim": {"lr": 1}}}}))
    cases = [
        ["--strategy", "icarl", "--memory", "0"],
        ["--strategy", "il-baseline", "--plugin", "nme", "--memory", "0"],
        ["--strategy", "icarl", "--memory-budget", "3"],
        ["--strategy", "bic", "--memory", "1", "--set", "plugins.bic-bias-layer.validation=exemplars"],
        ["--strategy", "bic", "--set", "plugins.bic-bias-layer.milestones=[0,5]"],
        ["--strategy", "bic", "--set", "plugins.bic-bias-layer.milestones=[-3]"],
        ["--strategy", "eeil", "--set", "plugins.balanced-finetuning.milestones=[20,10]"],
        ["--strategy", "ss-il", "--set", "data.synthetic_classes=6"],  # synthetic-b4-2 of 6: one-class steps
        ["--strategy", str(strategy_file)],
        ["--strategy", "il-baseline", "--seeds", "1,,2"],
        ["--strategy", "il-baseline", "--set", f"logging.wandb_tags=[{'t' * 65}]"],
    ]
    for case in cases:
        argv = ["sweep", "--scenario", "synthetic-b4-2", *case, "--dry-run", "--out", work / "w"]
        outcome, err = attempt(argv, expected=(0, 2))
        if outcome == "ok" and "cil: error" not in err and "invalid  " not in err:
            outcome = "accepted (refused late or never)"
        count("refused before any data (issue 35 items 3, 10, 11, 15)", outcome)


def rank_deaths(work: Path, count) -> None:
    from tests.test_distributed import start_and_wait_for_step_0

    statuses = {}
    for victim in ("rank 0", "rank 1", "launcher"):
        out = work / victim.replace(" ", "")
        job, ranks = start_and_wait_for_step_0(out)
        os.kill(job.pid if victim == "launcher" else ranks[int(victim[-1])], signal.SIGKILL)
        _, err = job.communicate(timeout=300)
        time.sleep(5 if victim == "launcher" else 0)
        alive = [pid for pid in ranks.values() if Path(f"/proc/{pid}").exists()]
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
        lines = [
            line for line in err.splitlines() if line and not line.startswith(("synthetic-b6-2: ", "writing ", "step "))
        ]
        outcome = "ok"
        statuses[victim] = json.loads((out / "results.json").read_text())["status"]
        if alive or (victim == "launcher" and statuses[victim] == "complete"):
            outcome = "ranks kept running without their launcher"
        elif victim != "launcher" and len(lines) != 1:
            outcome = f"{len(lines)} lines (tracebacks, torchrun W/E)"
        count("a process of a data-parallel run killed", outcome)
    if statuses["rank 0"] != statuses["rank 1"]:
        count("a process of a data-parallel run killed", f"status differs: {statuses}")


def accuracies_so_far(out: Path) -> bool:
    try:
        return bool(json.loads((out / "results.json").read_text())["steps"])
    except (OSError, ValueError, KeyError):
        return False


def census(n: int) -> dict[str, Counter]:
    work = Path(tempfile.mkdtemp(prefix="cil-census-faults-"))
    tally: dict[str, Counter] = {}

    def count(family: str, outcome: str) -> None:
        tally.setdefault(family, Counter())[outcome] += 1

    every = census_settings(n)
    here = os.getcwd()
    try:
        refused_writes(work, count)
        planted_links(work, count)
        claim_files(work, count, every)
        escaping_names(work, count, every)
        os.chdir(here)
        late_values(work, count)
        refused_before_data(work, count)
        rank_deaths(work, count)
    finally:
        os.chdir(here)
        shutil.rmtree(work, ignore_errors=True)
    return tally


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    print_table(census(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
