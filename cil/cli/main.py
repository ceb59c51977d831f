"""``cil``'s entry point: parse, dispatch to a sub-command, and turn every user mistake into one line
on stderr and an exit code (docs/results.md lists them), never a traceback."""

from __future__ import annotations

import contextlib
import os
import sys

from cil.cli.commands import COMMANDS
from cil.cli.parser import build_parser
from cil.errors import PeerLost, ReportedInterrupt, RunDiverged, StorageError, UserError

EXIT_USAGE = 2


EXIT_INTERRUPTED = 130


EXIT_DIVERGED = 3
"""A run stopped because its loss became NaN or infinite (its completed steps are saved)."""


EXIT_STORAGE = 74
"""The operating system refused a write (full disk, read-only place, no permission): EX_IOERR of sysexits.h.
What was completed before is kept; the line says how to continue once the cause is gone."""


EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE, what a shell reports for a command whose output pipe closed."""


def _one_line(exc: BaseException) -> str:
    """The user-facing line of an error (DataLoader workers wrap the original message)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    last = lines[-1]
    if "UserError: " in last:  # re-raised from a worker: keep the original message
        return last.split("UserError: ", 1)[1]
    return lines[0]


def main(argv: list[str] | None = None) -> int:
    from cil.training.distributed import EXIT_PEER_LOST, is_secondary_rank

    if is_secondary_rank():  # torchrun's other processes: rank 0 prints for the run
        sys.stdout = open(os.devnull, "w")
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(argv)
        args.argv = argv
        return COMMANDS[args.command](args)
    except RunDiverged as exc:
        if not is_secondary_rank():
            print(f"cil: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_DIVERGED
    except PeerLost:  # another rank of this data-parallel run died: its launcher says which, and how to resume
        return EXIT_PEER_LOST
    except StorageError as exc:
        if not is_secondary_rank():
            print(f"cil: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_STORAGE
    except UserError as exc:
        if not is_secondary_rank():
            print(f"cil: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ReportedInterrupt:  # what was saved and how to continue is printed already
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        from cil.training.distributed import launched_by_cil

        if not launched_by_cil():  # a rank of `cil run --nproc`: its launcher says how the run ended
            print("cil: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (``cil list | head``): stop quietly, as Unix tools do
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
