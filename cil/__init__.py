"""cil: class-incremental learning for PyTorch."""

import warnings as _warnings

__version__ = "0.1.0"

# Import-time noise of dependencies, filtered narrowly (that message from that module only), so that every
# command and a notebook's first cell start clean:
# - qpsolvers (through Avalanche) warns when no QP solver is installed: the qpsolvers release pip picks now
#   has no `open_source_solvers` extra, so Avalanche's requirement installs none; cil uses no QP solver.
# - tqdm.auto warns without ipywidgets in a notebook; cil's progress falls back to text there.
_warnings.filterwarnings("ignore", message="no QP solver found on your system", module="qpsolvers")
_warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")
