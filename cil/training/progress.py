"""Where a run's progress shows: a bar on a terminal or in a notebook, one line per epoch elsewhere."""

from __future__ import annotations

import sys


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    ip = shell.get_ipython() if hasattr(shell, "get_ipython") else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def has_widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def bars_visible() -> bool:
    """Whether a progress bar can be seen: a terminal, or a notebook with ipywidgets (its widget updates in
    place). A notebook without ipywidgets gets one line per epoch instead: tqdm's text bar would store one
    output per refresh in the notebook (thousands for a long run executed headless)."""
    return sys.stderr.isatty() or (in_notebook() and has_widgets())


def progress_bar(**kwargs):
    """A tqdm bar: the notebook widget (``tqdm.auto``) in Jupyter, text on a terminal."""
    if in_notebook():
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(**kwargs)
