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


def bars_visible() -> bool:
    """Whether a progress bar can be seen (a terminal, or a notebook's output cell)."""
    return sys.stderr.isatty() or in_notebook()


def progress_bar(**kwargs):
    """A tqdm bar: the notebook widget (``tqdm.auto``) in Jupyter when ipywidgets is there, text elsewhere."""
    if in_notebook():
        try:
            import ipywidgets  # noqa: F401
            from tqdm.auto import tqdm
        except ImportError:
            from tqdm import tqdm
    else:
        from tqdm import tqdm
    return tqdm(**kwargs)
