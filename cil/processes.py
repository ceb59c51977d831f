"""Child processes that stop when the process that started them dies.

A data-parallel rank (started by ``cil run --nproc``) and a sweep worker (started by ``cil sweep --jobs``) would
otherwise go on after their parent is killed: ranks finishing a run nobody waits for, workers taking new runs
from the queue. ``stop_with_parent`` makes the parent's death a SIGTERM to the child (Linux: the kernel's
parent-death signal; elsewhere: a thread that checks the parent every second), which a run turns into a saved,
resumable interruption (cil/runs/run.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time

WATCH_S = 1.0


def stop_with_parent(expected_parent: int | None = None) -> None:
    """Receive SIGTERM when this process's parent dies; at once if it is already gone (``expected_parent`` is
    not the parent any more: the child was adopted before this call)."""
    parent = expected_parent if expected_parent is not None else os.getppid()
    if not _parent_death_signal(signal.SIGTERM):
        threading.Thread(target=_watch, args=(parent,), name="cil-parent-watch", daemon=True).start()
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _parent_death_signal(signum: int) -> bool:
    """Linux's PR_SET_PDEATHSIG; False where it is not available."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, signum, 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_S)
    os.kill(os.getpid(), signal.SIGTERM)


def command_line(*args: object) -> str:
    """A cil command as a shell can paste it: cil as this process was called, then ``args``, every word quoted
    where the shell would read it otherwise (a space, a quote, ``$(...)`` in a run directory's name)."""
    import shlex

    return " ".join([cil_command(), *(shlex.quote(str(a)) for a in args)])


def cil_command() -> str:
    """How to call cil again the way this process was called, for the commands cil prints ("continue with:
    ..."): ``cil`` when that name on the PATH is this script, else the script as typed (``.venv/bin/cil``, after
    ``make demo`` in a shell with no virtual environment active), or ``python -m cil``."""
    import shlex
    import shutil
    import sys

    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "cil":
        on_path = shutil.which("cil")
        if on_path and os.path.realpath(on_path) == os.path.realpath(script):
            return "cil"
        return shlex.quote(script)
    if script.endswith(os.path.join("cil", "__main__.py")):
        python = shutil.which("python")
        same = python is not None and os.path.realpath(python) == os.path.realpath(sys.executable)
        return f"{'python' if same else shlex.quote(sys.executable)} -m cil"
    return "cil"
