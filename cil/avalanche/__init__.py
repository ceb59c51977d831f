"""cil's pieces inside a plain Avalanche strategy (``Naive``, ``SupervisedTemplate``), no cil engine needed.

* ``BalancedSoftmaxCriterion``: Balanced Softmax CE (Jodelet et al., Eq. 3-5) as an Avalanche
  criterion (it is also a plugin), with class counts as the mini-batches sample them, replay buffer
  included;
* ``HerdingSelection``: iCaRL herding on L2-normalised features, an ``ExemplarsSelectionStrategy``
  for Avalanche's ``ParametricBuffer``;
* ``LogitDistillationPlugin``: IL-Baseline's distillation (Eq. 1-2) from the previous model;
* ``PODFlatPlugin``: PODNet's POD-flat on a named layer's output.

See docs/avalanche.md. POD-spatial, LUCIR's and PODNet's classifiers and imprinting need cil's model
(its stage outputs and incremental heads) and are not offered here.
"""

from cil.avalanche.bsce import BalancedSoftmaxCriterion, sampled_class_counts
from cil.avalanche.distillation import LogitDistillationPlugin, PODFlatPlugin
from cil.avalanche.herding import HerdingSelection

__all__ = [
    "BalancedSoftmaxCriterion",
    "HerdingSelection",
    "LogitDistillationPlugin",
    "PODFlatPlugin",
    "sampled_class_counts",
]
