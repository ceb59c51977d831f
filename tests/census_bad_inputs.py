"""Count generated bad inputs that end badly (an escaped exception, another exit code than 0 or 2, or
more than one line), by family: the evidence for the robustness work, run against any cil tree.

    python -m tests.census_bad_inputs [N]        # N generated cases per family (default 200)

Run it from a checkout's root (that checkout's ``cil`` is imported). The generators are the tests'
(tests/test_bad_inputs.py); here nothing is asserted, every case is tried and counted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cil.cli import main
from tests.test_bad_inputs import (
    BASE,
    DOCUMENTS,
    GARBAGE,
    LEAVES,
    SET_VALUES,
    STRATEGY_DOCUMENTS,
    SWEEP_DOCUMENTS,
    VALUES,
    garbage_argv,
    options_of,
)

TINY = [
    "--epochs",
    "1",
    "--limit-per-class",
    "6",
    "--no-progress",
    "--no-tensorboard",
    "--set",
    "model.backbone=tiny",
    "--set",
    "data.synthetic_classes=10",
    "--set",
    "data.test_limit_per_class=2",
]
SET_KEYS = [
    "seed",
    "class_order_seed",
    "device",
    "memory.per_class",
    "memory.budget",
    "memory.selection",
    "model.backbone",
    "model.head",
    "model.proxies_per_class",
    "optim.lr",
    "optim.momentum",
    "optim.weight_decay",
    "optim.batch_size",
    "optim.epochs",
    "optim.milestones",
    "optim.gamma",
    "optim.schedule",
    "data.limit_per_class",
    "data.num_workers",
    "data.image_size",
    "loss.alpha_init",
    "loss.update_every",
    "loss.meta_lr",
    "method.temperature",
    "method.rho",
    "runtime.precision",
    "runtime.eval_batch_size",
    "plugins.gala.name",
    "scenario",
    "strategy",
]


class Reached(Exception):
    pass


def attempt(argv: list) -> str:
    """'ok', or how the case ended badly."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main([str(a) for a in argv])
    except Reached:
        return "ok"
    except BaseException as exc:
        return f"traceback ({type(exc).__name__})"
    if code not in (0, 2):
        return f"exit {code}"
    if code == 2 and len(err.getvalue().strip().splitlines()) != 1:
        return "several lines"
    return "ok"


def census_settings(n: int) -> settings:
    """Hypothesis settings of a census: ``n`` generated cases, the same ones every time, all of them tried."""
    return settings(
        max_examples=n,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


def census(n: int) -> dict[str, Counter]:
    import cil.runs.run

    work = Path(tempfile.mkdtemp(prefix="cil-census-"))
    os.chdir(work)  # relative paths among the garbage values land here, not in the checkout
    tally: dict[str, Counter] = {}
    finished = work / "finished"
    assert (
        attempt(["run", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline-bsce", *TINY, "--out", finished])
        == "ok"
    )
    real_run = cil.runs.run.run

    def stub(*args, **kwargs):
        raise Reached

    def count(family: str, outcome: str) -> None:
        tally.setdefault(family, Counter())[outcome] += 1

    every = census_settings(n)
    case = iter(range(10**9))

    @every
    @given(document=STRATEGY_DOCUMENTS)
    def strategy_files(document):
        path = work / f"s{next(case)}.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
        count(
            "strategy file",
            attempt(["sweep", "--scenario", "synthetic-b6-2", "--strategy", path, "--dry-run", "--out", work / "o"]),
        )

    @every
    @given(document=SWEEP_DOCUMENTS)
    def sweep_files(document):
        path = work / f"p{next(case)}.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
        count("sweep file", attempt(["sweep", path, "--dry-run", "--out", work / "o"]))

    @every
    @given(document=DOCUMENTS)
    def results_files(document):
        run_dir = work / f"r{next(case)}"
        shutil.copytree(finished, run_dir)
        (run_dir / "results.json").write_text(json.dumps(document))
        outcomes = [
            attempt(["report", run_dir, "--metric", "all"]),
            attempt(["plot", run_dir, "--kind", "all", "--out", work / "plots"]),
        ]
        cil.runs.run.run = stub
        outcomes.append(attempt(["run", "--resume", run_dir]))
        cil.runs.run.run = real_run
        count("results.json (report, plot, resume)", next((o for o in outcomes if o != "ok"), "ok"))
        shutil.rmtree(run_dir)

    @every
    @given(
        payload=st.fixed_dictionaries(
            {"format": st.just(1) | LEAVES}, optional={"state": VALUES, "results": VALUES, "config": VALUES}
        )
        | VALUES
    )
    def checkpoints(payload):
        run_dir = work / f"c{next(case)}"
        shutil.copytree(finished, run_dir)
        results = json.loads((run_dir / "results.json").read_text())
        (run_dir / "results.json").write_text(json.dumps({**results, "status": "interrupted"}))
        torch.save(payload, run_dir / "checkpoints" / "last.pt")
        count("checkpoint (resume)", attempt(["run", "--resume", run_dir]))
        shutil.rmtree(run_dir)

    @every
    @given(key=st.sampled_from(SET_KEYS), value=SET_VALUES)
    def set_values(key, value):
        count(
            "--set KEY=VALUE",
            attempt(
                [
                    "sweep",
                    "--scenario",
                    "synthetic-b6-2",
                    "--strategy",
                    "podnet-meta-bsce",
                    "--set",
                    f"{key}={value}",
                    "--dry-run",
                    "--out",
                    work / "o",
                ]
            ),
        )

    for family in (strategy_files, sweep_files, results_files, checkpoints, set_values):
        family()
    cil.runs.run.run = stub
    for command in BASE:
        for option in options_of(command):
            for value in GARBAGE:
                count("garbage in an option", attempt(garbage_argv(command, option, value, finished, work / "o")))
    cil.runs.run.run = real_run
    shutil.rmtree(work, ignore_errors=True)
    return tally


def print_table(tally: dict[str, Counter]) -> None:
    """The census as a Markdown table: cases per family, how many ended badly, and how."""
    print("| family | cases | ending badly | how |")
    print("| --- | ---: | ---: | --- |")
    for family, outcomes in tally.items():
        bad = {k: v for k, v in outcomes.items() if k != "ok"}
        how = ", ".join(f"{k} {v}" for k, v in sorted(bad.items(), key=lambda kv: -kv[1]))
        print(f"| {family} | {sum(outcomes.values())} | {sum(bad.values())} | {how} |")


if __name__ == "__main__":
    print_table(census(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
