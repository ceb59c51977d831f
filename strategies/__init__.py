"""cil's methods, classification losses and plugins; importing this package registers them all.

One module per method or plugin; each cites the equations of its paper it implements.
"""

from cil.strategies import (  # noqa: F401  (registration side effects)
    balanced_finetuning,
    bsce,
    ce,
    finetune,
    gala,
    gbg,
    il_baseline,
    lucir,
    meta_bsce,
    mfw,
    nca,
    ncm,
    nme,
    podnet,
    rebalancing,
    relaxed_bsce,
    slda,
)
