"""iCaRL herding as an Avalanche ``ExemplarsSelectionStrategy``."""

from __future__ import annotations

from avalanche.training.storage_policy import FeatureBasedExemplarsSelectionStrategy

from cil.training.memory import herding_selection


class HerdingSelection(FeatureBasedExemplarsSelectionStrategy):
    """Rank a class's samples by herding (Rebuffi et al. 2017, Alg. 4) on L2-normalised features.

    ``layer_name`` names the module of ``model`` whose output is the feature vector (Avalanche's
    ``FeatureExtractorBackbone``). Use with ``ParametricBuffer(..., groupby="class",
    selection_strategy=HerdingSelection(model, "features"))``. Avalanche's own
    ``HerdingSelectionStrategy`` herds the raw features; iCaRL, and cil, normalise them first.
    """

    def make_sorted_indices_from_features(self, features) -> list[int]:
        features = features.flatten(1).float().cpu()
        return herding_selection(features, len(features)).tolist()
