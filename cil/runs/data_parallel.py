"""Launching a data-parallel run (``cil run --nproc N``): N processes under torchrun on this machine, and what
happens when one of them dies (cil/training/distributed.py is what each process does)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cil.processes import command_line
from cil.training.distributed import EXIT_PEER_LOST, LAUNCHER_PID


def launch(nproc: int, cil_argv: list[str], out: Path) -> int:
    """``cil run --nproc N``: the same command in N processes under torch.distributed.run (torchrun), one
    machine, the run in ``out``; the exit code of the first process that failed, 0 when all finished.

    A process that dies (killed, out of memory) ends the run for all: the launcher records the run as failed
    (whichever rank it was; rank 0 may not have been able to) and prints one line saying which rank died and how
    to resume. torchrun's own warnings are not shown. The ranks stop when the launcher dies (``stop_with_parent``).
    """
    import logging
    import signal

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    os.environ[LAUNCHER_PID] = str(os.getpid())
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its W/E lines repeat the ranks'
    args = get_args_parser().parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "cil", *cil_argv])
    try:
        run(args)
    except ChildFailedError as exc:
        rank, first = min(exc.failures.items(), key=lambda item: item[1].timestamp)
        if first.exitcode > 0 and first.exitcode != EXIT_PEER_LOST:
            return first.exitcode  # the rank printed its own line (a user error, a full disk, a traceback)
        how = f"was killed by {signal.Signals(-first.exitcode).name}" if first.exitcode < 0 else "stopped"
        kept = record_lost_rank(out, f"the process of rank {rank} of {nproc} {how}")
        print(
            f"cil: error: the process of rank {rank} of {nproc} {how}; {kept}continue with: "
            f"{command_line('run', '--resume', out, '--nproc', nproc)}",
            file=sys.stderr,
        )
        return 1
    except SignalException:  # SIGTERM/SIGINT: the ranks stopped at once and saved the run as interrupted
        print(
            f"interrupted: {kept_steps(out)}continue with: {command_line('run', '--resume', out, '--nproc', nproc)}",
            file=sys.stderr,
        )
        return 130
    return 0


def record_lost_rank(out: Path, error: str) -> str:
    """Record the run in ``out`` as failed with ``error`` when no rank could (rank 0 died with it "running");
    what its results keep, as the start of a sentence ("1 of 3 steps are kept in OUT; ")."""
    import json

    from cil.errors import UserError
    from cil.files import atomic_write_text
    from cil.runs.claims import claimed
    from cil.runs.results import RESULTS, load_results

    if not (out / RESULTS).is_file():
        return ""
    try:
        with claimed(out):  # rank 0's claim: released, or stale now that it is dead
            results = load_results(out)
            # "interrupted": torchrun stopped the others with SIGTERM, after the death
            if results["status"] in ("running", "failed", "interrupted"):
                results.update(status="failed", error=error)
                atomic_write_text(out / RESULTS, json.dumps(results, indent=2) + "\n")
    except UserError:
        return ""
    return kept_steps(out)


def kept_steps(out: Path) -> str:
    """ "N of M steps are kept in OUT; " from the run's results ("" when there are none to read)."""
    from cil.errors import UserError
    from cil.runs.results import RESULTS, load_results

    try:
        results = load_results(out) if (out / RESULTS).is_file() else None
    except UserError:
        results = None
    if results is None:
        return ""
    return f"{len(results['steps'])} of {results.get('n_steps', '?')} steps are kept in {out}; "
