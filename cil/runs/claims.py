"""Claims on run directories, so that no run is ever trained twice at the same time.

Before a run starts (``cil run``, or a run of a sweep, in any process or on any machine sharing the
file system), its directory gets a claim file, ``RUN_DIR/.claim``, created with ``O_CREAT |
O_EXCL`` (the one atomic "create if absent" that local and network file systems both offer) and
holding the claimant's host, pid, the pid's start time and the time of the claim. The claim is
removed when the run ends, however it ends (complete, failed, interrupted).

A claim whose process is gone (killed with SIGKILL, a crashed machine rebooted) is stale. On the
same host that is known for certain (no process with that pid, or one started at another time:
a reused pid), and the next claimant takes it over, under a second exclusive file so that two
claimants never both take over the same stale claim. A claim from another host cannot be checked;
it is left alone and the error says which file to remove if that run is really gone.

A claim file cil did not write (not JSON, a pid that is no positive number the OS could give, a
directory or a link in its place) is damaged: it is never taken over, since nothing in it says whether
its run is gone, and the error names the file to remove. The one exception is an empty regular file
older than ``WRITING_GRACE_S``: a claimant died between creating it and writing it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from cil.errors import StorageError, UserError
from cil.files import reason, refused_writes

CLAIM = ".claim"
TAKEOVER = ".claim.takeover"
WRITING_GRACE_S = 10.0
"""A claim file still empty after this long was left by a process that died while creating it."""


class RunClaimed(UserError):
    """The run directory is claimed by a live (or unverifiable) process."""


class DamagedClaim(UserError):
    """A claim file that cil cannot read: it names the file to remove."""


PID_MAX = 4_194_304
"""The largest pid Linux can give (``/proc/sys/kernel/pid_max`` is at most 2**22)."""


@dataclass(frozen=True)
class Claim:
    host: str
    pid: int
    started: str | None
    """Start time of the pid (Linux: /proc/PID/stat field 22), to tell a reused pid from the claimant."""
    since: str

    @classmethod
    def mine(cls) -> Claim:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start(pid), time.strftime("%Y-%m-%d %H:%M:%S"))

    def alive(self) -> bool | None:
        """Whether the claimant still runs: True, False, or None when it cannot be known (another host)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # a process of another user has the pid
            pass
        return self.started is None or process_start(self.pid) in (None, self.started)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (since {self.since})"


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks after boot, or None where /proc has no such entry."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name in parentheses may hold spaces


def read_claim(path: Path) -> Claim | None:
    """The claim in ``path``; None while it is being written (an empty regular file) or gone; DamagedClaim
    when it holds anything else than what :meth:`Claim.mine` writes."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise DamagedClaim(_damaged(path, "not a regular file"))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedClaim(_damaged(path, getattr(exc, "strerror", None) or "not a text file")) from None
    if not text:
        return None
    try:
        fields = json.loads(text)
    except ValueError:
        raise DamagedClaim(_damaged(path, "not JSON")) from None
    if not isinstance(fields, dict) or set(fields) != {"host", "pid", "started", "since"}:
        raise DamagedClaim(_damaged(path, "not the fields host, pid, started, since"))
    pid = fields["pid"]
    if not (isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid <= PID_MAX):
        raise DamagedClaim(_damaged(path, f"pid {str(pid)[:20]!r} is no process id"))
    if not all(isinstance(fields[k], str) for k in ("host", "since")) or not isinstance(fields["started"], str | None):
        raise DamagedClaim(_damaged(path, "host, started and since must be text"))
    return Claim(**fields)


def _damaged(path: Path, why: str) -> str:
    return f"the claim {path} is damaged ({why}); if no run is using {path.parent}, remove {path} and try again"


def _create(path: Path, claim: Claim) -> bool:
    """Create ``path`` holding ``claim`` if it does not exist yet (atomically); False if it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise StorageError(path, reason(exc)) from None
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(claim), f)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:  # a full disk: leave no empty claim behind
        path.unlink(missing_ok=True)
        raise StorageError(path, reason(exc)) from None
    return True


def _stale(path: Path) -> tuple[bool, Claim | None]:
    """(whether the claim in ``path`` may be taken over, the claim as read)."""
    holder = read_claim(path)
    if holder is None:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True, None
        return age > WRITING_GRACE_S, None
    return holder.alive() is False, holder


def acquire(run_dir: Path) -> Claim:
    """Claim ``run_dir`` for this process, taking over a stale claim; RunClaimed if it is taken."""
    run_dir = Path(run_dir)
    with refused_writes(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    path, mine = run_dir / CLAIM, Claim.mine()
    if _create(path, mine):
        return mine
    stale, holder = _stale(path)
    if not stale:
        raise RunClaimed(_taken_message(run_dir, holder))
    guard = run_dir / TAKEOVER
    if not _create(guard, mine):
        if not _stale(guard)[0]:
            raise RunClaimed(f"{run_dir} is being taken over by another process")
        guard.unlink(missing_ok=True)
        if not _create(guard, mine):
            raise RunClaimed(f"{run_dir} is being taken over by another process")
    try:
        if read_claim(path) == holder:  # still the stale claim we looked at
            path.unlink(missing_ok=True)
        if not _create(path, mine):
            raise RunClaimed(_taken_message(run_dir, read_claim(path)))
    finally:
        guard.unlink(missing_ok=True)
    return mine


def release(run_dir: Path, claim: Claim) -> None:
    """Remove the claim on ``run_dir`` if it is still ``claim``."""
    path = Path(run_dir) / CLAIM
    # replaced meanwhile by something cil did not write: not ours to remove; a claim the OS will not let us
    # remove (a folder made read-only meanwhile) is stale once this process ends, and taken over then
    with suppress(DamagedClaim, OSError):
        if read_claim(path) == claim:
            path.unlink(missing_ok=True)


@contextmanager
def claimed(run_dir: Path) -> Iterator[Claim]:
    """Hold the claim on ``run_dir`` while the block runs; folders it created and left empty are removed."""
    run_dir = Path(run_dir)
    created = _missing_folders(run_dir)
    claim = acquire(run_dir)
    try:
        yield claim
    finally:
        release(run_dir, claim)
        for folder in created:  # deepest first; stops at the first that holds something
            try:
                folder.rmdir()
            except OSError:
                break


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _taken_message(run_dir: Path, holder: Claim | None) -> str:
    if holder is None:
        return f"{run_dir} is being claimed by another process"
    where = f"{run_dir} is being run by {holder.describe()}"
    if holder.alive() is None:
        return f"{where}; if that run is gone, remove {run_dir / CLAIM}"
    return where
