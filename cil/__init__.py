"""cil: class-incremental learning for PyTorch."""

__version__ = "0.1.0"
