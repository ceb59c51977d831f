"""Incremental classification heads: they grow at each step and keep the old classes' weights."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


class IncrementalHead(nn.Module):
    """A head whose classes arrive in groups; ``groups[t]`` holds the weights of step t's classes.

    Keeping one parameter group per step lets methods treat old and new class weights differently
    (freeze them, give them their own learning rate) and keeps old weights untouched by growth.
    """

    def __init__(self, in_dim: int):
        super().__init__()
        self.in_dim = in_dim
        self.groups: Any = nn.ModuleList()
        """One entry per step (an ``nn.Linear``, or an ``nn.Parameter`` in the cosine heads' ``ParameterList``)."""

    @property
    def n_classes(self) -> int:
        return sum(self.group_size(g) for g in self.groups)

    def group_size(self, group: Any) -> int:
        """Classes in one group of weights."""
        raise NotImplementedError  # not an abc.ABC: higher's functional copies of a module re-base its class

    def new_group(self, n_new: int, device: torch.device) -> Any:
        """The weights of ``n_new`` new classes (a parameter, or a module of several)."""
        raise NotImplementedError

    def add_classes(self, n_new: int) -> None:
        if n_new <= 0:
            raise ValueError("n_new must be positive")
        device = next(self.parameters(), torch.empty(0)).device
        self.groups.append(self.new_group(n_new, device))


class LinearHead(IncrementalHead):
    """Fully connected logits z = W f + b, one ``nn.Linear`` per step (PyTorch's default init); without ``bias``,
    z = W f (the WA authors' classifier)."""

    def __init__(self, in_dim: int, bias: bool = True):
        super().__init__(in_dim)
        self.bias = bias

    def group_size(self, group: nn.Module) -> int:
        assert isinstance(group, nn.Linear)
        return group.out_features

    def new_group(self, n_new: int, device: torch.device) -> nn.Module:
        return nn.Linear(self.in_dim, n_new, bias=self.bias, device=device)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([g(features) for g in self.groups], dim=1)


class _ScaledCosineHead(IncrementalHead):
    """Shared part of the cosine heads: normalised weights per step and a learnable scale.

    ``forward`` returns ``scale * similarities(features)``; methods that need the unscaled
    similarities (margins, NCA) divide the logits by ``scale`` or call ``similarities``.
    """

    proxies_per_class = 1

    def __init__(self, in_dim: int):
        super().__init__(in_dim)
        self.groups = nn.ParameterList()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def group_size(self, group: Any) -> int:
        return group.shape[0] // self.proxies_per_class

    def new_group(self, n_new: int, device: torch.device) -> nn.Parameter:
        weight = torch.empty(n_new * self.proxies_per_class, self.in_dim, device=device)
        nn.init.kaiming_uniform_(weight, a=5**0.5)  # what nn.Linear uses, before normalisation
        return nn.Parameter(weight)

    def proxy_cosines(self, features: torch.Tensor) -> torch.Tensor:
        """Cosine of every feature with every proxy: [B, n_classes * proxies_per_class]."""
        weights = torch.cat(list(self.groups), dim=0)
        return F.normalize(features, dim=1) @ F.normalize(weights, dim=1).t()

    def similarities(self, features: torch.Tensor) -> torch.Tensor:
        """Cosine similarities [B, n_classes] (before the learned scale)."""
        raise NotImplementedError

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * self.similarities(features)

    @torch.no_grad()
    def old_weight_norm(self, group: int) -> float:
        """Mean norm of the weights of the groups before ``group`` (1.0 when there are none)."""
        if group == 0:
            return 1.0
        return float(torch.cat(list(self.groups[:group])).norm(dim=1).mean())


class CosineHead(_ScaledCosineHead):
    """LUCIR's cosine normalisation (Hou et al. 2019, Eq. 4): z_i = sigma * <w_i / |w_i|, f / |f|>.

    sigma is learnable and starts at 1. ``imprint`` sets new classes' weights to their normalised
    mean embedding (weight imprinting, LUCIR Sec. 4.1), scaled, as the official code does, to the
    mean norm of the old classes' weights: the logits do not depend on weight norms, but the
    gradient a weight receives is inversely proportional to its norm, so new and old weights then
    learn at the same pace.
    """

    def similarities(self, features: torch.Tensor) -> torch.Tensor:
        return self.proxy_cosines(features)

    @torch.no_grad()
    def imprint(self, group: int, class_features: list[torch.Tensor]) -> None:
        """Weights of the classes of step ``group``: the normalised mean of normalised embeddings,
        times the mean norm of the earlier groups' weights."""
        means = torch.stack([F.normalize(f, dim=1).mean(0) for f in class_features])
        self.groups[group].copy_(F.normalize(means, dim=1) * self.old_weight_norm(group))


class LocalSimilarityHead(_ScaledCosineHead):
    """PODNet's Local Similarity Classifier (Douillard et al. 2020, Eq. 7-8).

    Every class c has K proxies theta_{c,k}. With s_{c,k} the similarity of the embedding with
    proxy k, the class similarity is the softmax-weighted mean over proxies,

        y_hat_c = sum_k softmax_k(s_{c,k}) * s_{c,k},

    and the logits are eta * y_hat with a learnable eta (initially 1). ``similarity``: ``cosine``,
    the paper's s = cos(f, theta); or ``squared-distance``, the official code's
    s = -|f/|f| - theta/|theta||^2 = 2 cos - 2, whose class similarities span [-4, 0] instead of
    [-1, 1] (logits twice as large for the same eta) and whose proxy softmax is twice as sharp.

    New weights start as the official code's: normal with standard deviation 1/sqrt(d). ``imprint``
    initialises a new class's proxies with the k-means centres (scikit-learn, 10 restarts) of its
    normalised embeddings, times the mean norm of the old classes' proxies, as the official code.
    """

    def __init__(self, in_dim: int, proxies_per_class: int = 10, similarity: str = "cosine"):
        super().__init__(in_dim)
        if similarity not in ("cosine", "squared-distance"):
            raise ValueError(f"unknown lsc similarity {similarity!r}")
        self.proxies_per_class = proxies_per_class
        self.similarity = similarity

    def new_group(self, n_new: int, device: torch.device) -> nn.Parameter:
        weight = torch.empty(n_new * self.proxies_per_class, self.in_dim, device=device)
        nn.init.kaiming_normal_(weight, nonlinearity="linear")
        return nn.Parameter(weight)

    def similarities(self, features: torch.Tensor) -> torch.Tensor:
        s = self.proxy_cosines(features)
        if self.similarity == "squared-distance":
            s = 2.0 * s - 2.0
        s = s.view(features.shape[0], -1, self.proxies_per_class)
        return (torch.softmax(s, dim=2) * s).sum(dim=2)

    @torch.no_grad()
    def imprint(self, group: int, class_features: list[torch.Tensor], seed: int = 0) -> None:
        scale = self.old_weight_norm(group)
        centres = [
            kmeans(F.normalize(f, dim=1), self.proxies_per_class, seed=seed + i) for i, f in enumerate(class_features)
        ]
        self.groups[group].copy_(torch.cat(centres) * scale)


def kmeans(points: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """k centres of ``points`` by scikit-learn's k-means (k-means++, 10 restarts); points repeated when n <= k."""
    n = points.shape[0]
    if n <= k:
        return points[torch.arange(k) % n].clone()
    from sklearn.cluster import KMeans

    fitted = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(points.detach().double().cpu().numpy())
    return torch.from_numpy(fitted.cluster_centers_).to(points.device, points.dtype)
