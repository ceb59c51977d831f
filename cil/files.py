"""Files and folders cil touches, handled in one place.

* Paths a user typed are checked once at the edge (``usable_path``): a NUL byte or a name too long
  for the file system is one clear line, not an OSError or ValueError from deep inside a command.
* Output places are checked before any work starts (``writable_folder``): a folder cil can create or
  write in, or one clear line.
* Every file cil writes is written atomically (``atomic_write_bytes``): to a temporary file in the
  same folder, then renamed over the target, so that readers see the old file or the new one.
* Every write the operating system refuses (ENOSPC, EROFS, EACCES, ...) becomes one ``StorageError``
  naming the path and the reason (``refused_writes``); appends never follow a symbolic link
  (``open_append``), nor does an atomic write (it replaces a link, never writes through it).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cil.errors import StorageError, UserError

if TYPE_CHECKING:
    import numpy as np


def usable_path(text: str | Path, what: str) -> Path:
    """``text`` as a Path the operating system can look up, or one UserError naming ``what``."""
    path = Path(text)
    if "\x00" in str(path):
        raise UserError(f"{what}: a path cannot contain a NUL character")
    if not str(path):
        raise UserError(f"{what}: the path is empty")
    try:
        path.absolute().exists()
    except OSError as exc:  # ENAMETOOLONG and the like
        raise UserError(
            f"{what}: cannot use {str(path)[:60]}{'...' if len(str(path)) > 60 else ''} "
            f"({os.strerror(exc.errno) if exc.errno else exc})"
        ) from None
    return path


def looks_like_path(ref: str) -> bool:
    """Whether a reference the user typed (``--strategy``, a sweep, ``extends``) is a path to a YAML file rather
    than the name of one of cil's own: it holds a folder separator or ends in ``.yaml``/``.yml``. A bare name is
    only ever looked up among the named ones, so ``../x`` can never reach outside cil's configs/ as a name."""
    return "/" in ref or os.sep in ref or ref.endswith((".yaml", ".yml"))


def is_file(path: Path) -> bool:
    """``path.is_file()``, False where the path cannot even be looked up (too long, NUL byte)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def writable_folder(path: Path, what: str) -> Path:
    """``path`` if it is, or can become, a folder this process may write in; else one UserError naming
    ``what`` (e.g. "--out"). Leaves nothing behind: the probe folder it creates in the nearest existing
    ancestor is removed at once, and a refused command creates no empty folder."""
    path = usable_path(path, what)
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path.absolute() else f" ({existing} is a file)"
        raise UserError(f"{what} {path}: not a folder{where}")
    try:  # really try: permission bits say nothing for root, or for /proc and read-only mounts
        os.rmdir(tempfile.mkdtemp(prefix=".cil-probe-", dir=existing))
    except OSError as exc:
        raise UserError(
            f"{what} {path}: cannot create anything in {existing} ({os.strerror(exc.errno) if exc.errno else exc})"
        ) from None
    return path


def _file_mode() -> int:
    """The mode open() would give a new file (mkstemp's own is 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


TEMPORARY_MARK = ".cil-tmp-"
"""In the name of every temporary file of an atomic write: ``.NAME.cil-tmp-XXXXXXXX``."""


def reason(exc: OSError) -> str:
    """What the operating system said, in words ("No space left on device")."""
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link, and cil does not write through links in its folders"
    return os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__


@contextlib.contextmanager
def refused_writes(path: Path | str, *, exactly: bool = False) -> Iterator[None]:
    """Turn an OSError raised inside the block into one StorageError naming the file the OS refused (``path``
    when the error names none, or always with ``exactly``: an atomic write names its target, not its
    temporary file)."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise StorageError(path if exactly or not exc.filename else exc.filename, reason(exc)) from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    with refused_writes(path, exactly=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMPORARY_MARK}", dir=path.parent)
    try:
        with refused_writes(path, exactly=True):
            os.fchmod(fd, _file_mode())
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
        raise


def open_append(path: Path) -> TextIO:
    """``path`` opened for appending text (created if missing, its folder too), line-buffered; a symbolic link
    in its place is refused (O_NOFOLLOW), not followed."""
    with refused_writes(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        return os.fdopen(fd, "a", buffering=1, newline="")


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files that atomic writes killed outright (SIGKILL, power loss) left in a run
    directory; call only while holding the directory's claim. The files removed."""
    stale = [p for p in run_dir.rglob(f".*{TEMPORARY_MARK}*") if p.is_file()] if run_dir.is_dir() else []
    for path in stale:
        with refused_writes(path):
            path.unlink(missing_ok=True)
    return stale


def planted_link(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first symbolic link among ``folder``/NAME for each of ``names`` and, for those that are folders,
    everything under them (links are not followed); None when there is none."""
    for name in names:
        top = folder / name
        if top.is_symlink():
            return top
        if not top.is_dir():
            continue
        for root, dirs, files in os.walk(top):
            for entry in sorted(dirs + files):
                if (Path(root) / entry).is_symlink():
                    return Path(root) / entry
    return None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())
