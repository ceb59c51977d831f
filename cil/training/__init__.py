"""The training core: the engine that runs every step, the contract its components are written
against, the rehearsal memory, and how a run uses its device (precision, layout, processes).

Nothing here reads or writes a run directory (cil.runs does) or knows a method by name (the
methods are components in cil.strategies, found through cil.registry).
"""
