"""Output places checked before any work starts: a folder cil can create or write in, or one clear line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cil.errors import UserError


def writable_folder(path: Path, what: str) -> Path:
    """``path`` if it is, or can become, a folder this process may write in; else one UserError naming
    ``what`` (e.g. "--out"). Leaves nothing behind: the probe folder it creates in the nearest existing
    ancestor is removed at once, and a refused command creates no empty folder."""
    from cil.user_paths import usable_path

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
        raise UserError(f"{what} {path}: cannot create anything in {existing} "
                        f"({os.strerror(exc.errno) if exc.errno else exc})") from None
    return path
