"""The ``cil`` command: the parser (``parser``), one function per sub-command (``commands``) and the
entry point (``main``). No training logic lives here: commands call cil.runs, cil.sweeps and
cil.analysis."""

from cil.cli.main import main

__all__ = ["main"]
