"""cil's methods, classification losses and plugins; importing this package registers them all.

One module per method or plugin; each cites the equations of its paper it implements.
"""

from strategies import (  # noqa: F401  (registration side effects)
    balanced_finetuning,
    bsce,
    ce,
    finetune,
    il_baseline,
    lucir,
    meta_bsce,
    nca,
    ncm,
    nme,
    podnet,
    relaxed_bsce,
    slda,
)
