"""Paths a user typed, checked once at the edge: a NUL byte or a name too long for the file system is
one clear line, not an OSError or ValueError from deep inside a command."""

from __future__ import annotations

import os
from pathlib import Path

from cil.errors import UserError


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
        raise UserError(f"{what}: cannot use {str(path)[:60]}{'...' if len(str(path)) > 60 else ''} "
                        f"({os.strerror(exc.errno) if exc.errno else exc})") from None
    return path


def is_file(path: Path) -> bool:
    """``path.is_file()``, False where the path cannot even be looked up (too long, NUL byte)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
