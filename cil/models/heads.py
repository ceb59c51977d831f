"""Incremental classification heads: they grow at each step and keep the old classes' weights."""

from __future__ import annotations

import torch
import torch.nn as nn


class IncrementalHead(nn.Module):
    """A head whose classes arrive in groups; ``groups[t]`` holds the weights of step t's classes.

    Keeping one parameter group per step lets methods treat old and new class weights differently
    (freeze them, give them their own learning rate) and keeps old weights untouched by growth.
    """

    def __init__(self, in_dim: int):
        super().__init__()
        self.in_dim = in_dim
        self.groups = nn.ModuleList()

    @property
    def n_classes(self) -> int:
        return sum(self.group_size(g) for g in self.groups)

    def group_size(self, group: nn.Module) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def new_group(self, n_new: int) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError

    def add_classes(self, n_new: int) -> None:
        if n_new <= 0:
            raise ValueError("n_new must be positive")
        device = next(self.parameters(), torch.empty(0)).device
        self.groups.append(self.new_group(n_new).to(device))


class LinearHead(IncrementalHead):
    """Fully connected logits z = W f + b, one ``nn.Linear`` per step (PyTorch's default init)."""

    def group_size(self, group: nn.Module) -> int:
        return group.out_features

    def new_group(self, n_new: int) -> nn.Module:
        return nn.Linear(self.in_dim, n_new)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([g(features) for g in self.groups], dim=1)
