"""Major Feature Weakening (Ye et al., Algorithm 1 and Eq. 12), as a plugin for any method.

During training, the intermediate feature after residual stage ``stage`` (Ye et al.: "after the
second group of convolutional layers", the stem being the first: residual stage 1) of each sample
is mixed with that of a partner from a random permutation of the mini-batch, keeping the sample's label:

    z~_n = (1 - l_n) g(x_n) + l_n g(x_perm(n)),    l_n = s(N_{y_n}) * Beta(a, a)

    s(N) = 0.5 * sigmoid((N - mu) / (beta * gamma))                       (Eq. 12)

with mu the geometric mean and gamma the standard deviation of the class counts N_c of the
step's training set (seen classes). Major (many-sample) classes get s near 0.5 and are weakened,
minor ones (old classes with a few exemplars) get s near 0. beta = 0.01 is the paper's value for
step imbalance, which is what a memory creates; 2.0 is its long-tailed value. A step whose
classes all have the same count (the base step) has no major class: s = 0, nothing is mixed.
No mixing at evaluation, in feature extraction (herding, NME) or in the previous model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cil.plugin import Batch, CilPlugin, ComponentConfig, Engine, NetOutput, ranged, register


def mixing_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """s(N_c) of Eq. 12 for every class; zeros when all counts are equal."""
    counts = counts.double()
    present = counts > 0
    gamma = counts[present].std(unbiased=False) if present.sum() > 1 else counts.new_zeros(())
    if gamma == 0:
        return torch.zeros_like(counts, dtype=torch.float32)
    mu = counts[present].log().mean().exp()
    return (0.5 * torch.sigmoid((counts - mu) / (beta * gamma))).float()


def mix_features(features: torch.Tensor, lam: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """(1 - l_n) z_n + l_n z_perm(n) for a batch of feature maps [B, ...] and weights l [B]."""
    shape = (-1,) + (1,) * (features.dim() - 1)
    lam = lam.to(features.dtype).view(shape)
    return (1 - lam) * features + lam * features[permutation]


@dataclass
class MFWConfig(ComponentConfig):
    name: str = "mfw"
    stage: int = ranged(1, ge=1, le=16)
    """Mix the output of this residual stage (1-based). Ye et al. mix "after the second group" counting the stem
    convolution as the first group, i.e. after the first residual stage; their Table 5 (input, stem, stage 1, 2,
    3) has its best value, the 78.5 of Table 1, at the third position: after stage 1."""
    beta: float = ranged(0.01, gt=0)
    """Softness of s (Eq. 12): 0.01 for step imbalance (Ye et al.), 2.0 for long-tailed data."""
    alpha: float = ranged(2.0, gt=0)
    """Beta(alpha, alpha) of the mixing coefficient (Ye et al. tune it; 2.0 in its Sec. 4 example)."""


@register("plugin", "mfw", MFWConfig)
class MajorFeatureWeakening(CilPlugin[MFWConfig]):
    def __init__(self, config: MFWConfig):
        super().__init__(config)
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        self._lam: torch.Tensor | None = None
        self._permutation: torch.Tensor | None = None
        self.weights = torch.zeros(0)
        self._beta: torch.distributions.Beta | None = None

    def before_step(self, engine: Engine) -> None:
        stages = engine.model.backbone.stages
        if self.config.stage > len(stages):
            from cil.errors import UserError

            raise UserError(f"plugins.mfw.stage {self.config.stage}: the backbone has {len(stages)} stages")
        self._hook = stages[self.config.stage - 1].register_forward_hook(self._mix)

    def before_epoch(self, engine: Engine) -> None:
        self.weights = mixing_weights(engine.train_class_counts.cpu(), self.config.beta).to(engine.device)
        alpha = torch.tensor(float(self.config.alpha), device=engine.device)
        self._beta = torch.distributions.Beta(alpha, alpha)

    def before_batch(self, engine: Engine, batch: Batch) -> Batch:
        """Draw l_n = s(N_{y_n}) Beta(a, a) and the partner permutation for this mini-batch, on the device."""
        y = batch.y
        assert self._beta is not None, "drawn from in before_epoch"
        self._lam = self.weights[y] * self._beta.sample((len(y),))
        self._permutation = torch.randperm(len(y), device=y.device)
        return batch

    def after_forward(self, engine: Engine, output: NetOutput) -> None:
        self._lam = self._permutation = None

    def _mix(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        if not module.training or self._lam is None or self._permutation is None or len(output) != len(self._lam):
            return output
        return mix_features(output, self._lam, self._permutation)

    def after_training(self, engine: Engine) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        engine.step_record["mfw_max_weight"] = round(float(self.weights.max()), 4) if len(self.weights) else 0.0
