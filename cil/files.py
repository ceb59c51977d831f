"""Files and folders cil touches, handled in one place.

* Paths a user typed are checked once at the edge (``usable_path``): a NUL byte or a name too long
  for the file system is one clear line, not an OSError or ValueError from deep inside a command.
* Output places are checked before any work starts (``writable_folder``): a folder cil can create or
  write in, or one clear line.
* Every file cil writes is written atomically (``atomic_write_bytes``): to a temporary file in the
  same folder, then renamed over the target, so that readers see the old file or the new one.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cil.errors import UserError

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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMPORARY_MARK}", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files that atomic writes killed outright (SIGKILL, power loss) left in a run
    directory; call only while holding the directory's claim. The files removed."""
    stale = [p for p in run_dir.rglob(f".*{TEMPORARY_MARK}*") if p.is_file()] if run_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())
