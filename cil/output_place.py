"""Output places checked before any work starts: a folder cil can create or write in, or one clear line."""

from __future__ import annotations

import os
from pathlib import Path

from cil.errors import UserError


def writable_folder(path: Path, what: str) -> Path:
    """``path`` if it is, or can become, a folder this process may write in; else one UserError naming
    ``what`` (e.g. "--out"). Creates nothing: a refused command leaves no empty folder behind."""
    path = Path(path)
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path.absolute() else f" ({existing} is a file)"
        raise UserError(f"{what} {path}: not a folder{where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {existing} is not writable by this user")
    return path
