"""What LUCIR and PODNet share: a normalised classifier whose new classes are imprinted from
their embeddings and whose old classes are frozen during incremental steps."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol, TypeVar

import torch
import torch.nn.functional as F

from cil.models.heads import CosineHead, LocalSimilarityHead
from cil.plugin import CilPlugin, Engine, require_head, without_parameters


def embedding_distillation_loss(features: torch.Tensor, previous_features: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 1 - cos(f, f_prev), f_prev a constant: LUCIR's less-forget constraint
    (Hou et al. 2019, Eq. 6) and POD-flat as the official PODNet code computes it."""
    return (1.0 - F.cosine_similarity(features, previous_features.detach(), dim=1)).mean()


def imprint_new_classes(engine: Engine, **kwargs: Any) -> None:
    """Initialise the newest head group from the embeddings (evaluation transform) of the step's new classes."""
    new = engine.experience_data
    features = engine.extract_features(new.indices)
    per_class = [features[(new.labels == c).to(features.device)] for c in engine.new_classes]
    head = engine.model.head
    assert isinstance(head, CosineHead | LocalSimilarityHead), "the method checked the head (require_head)"
    head.imprint(len(head.groups) - 1, per_class, **kwargs)


class CosineHeadSettings(Protocol):
    """What LUCIR's and PODNet's configs share."""

    name: str
    imprint: bool
    freeze_old_weights: bool


SettingsT = TypeVar("SettingsT", bound=CosineHeadSettings)


class CosineHeadMethod(CilPlugin[SettingsT], ABC):
    """Checks the head, imprints the new classes and freezes the old ones (``config.imprint``,
    ``config.freeze_old_weights``); subclasses set ``head_type``/``head_name`` and implement
    ``start_incremental_step``."""

    head_type: type
    head_name: str

    def before_step(self, engine: Engine) -> None:
        require_head(engine, self.head_type, self.config.name, self.head_name)
        if engine.n_old == 0:
            return
        self.start_incremental_step(engine, engine.n_seen - engine.n_old)
        if self.config.imprint:
            imprint_new_classes(engine, **self.imprint_options(engine))

    @abstractmethod
    def start_incremental_step(self, engine: Engine, n_new: int) -> None:
        """An incremental step begins with ``n_new`` new classes (before their imprinting)."""

    def imprint_options(self, engine: Engine) -> dict:
        return {}

    def param_groups(self, engine: Engine, groups: list[dict], lr: float) -> list[dict]:
        if self.config.freeze_old_weights and engine.n_old > 0:
            return without_parameters(groups, engine.model.head.groups[:-1])
        return groups
