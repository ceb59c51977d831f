"""The run configuration's schema: one dataclass per section, with declared value ranges.

Numeric fields declare their valid range with ``ranged`` (cil/config/fields.py); ``validate``
methods add the rules a range cannot say. Components (method, loss, plugins) subclass
``ComponentConfig`` and are looked up by name in the registry.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from cil.config.fields import ConfigError, check, join_key, milestones_field, ranged
from cil.errors import did_you_mean

DEFAULT_SEED = 1993
"""The training and class-order seed of every paper cil reproduces (Hou et al. 2019's class order)."""
MAX_SEED = 2**32 - 1
"""numpy's RandomState accepts seeds in [0, 2**32 - 1]."""


@dataclass
class ComponentConfig:
    """Base of every method, loss and plugin config: ``name`` selects the registered component."""

    name: str = ""

    def validate(self, prefix: str) -> None:
        """Raise ConfigError for bad values; subclasses extend."""

    def validate_with(self, run: RunConfig, prefix: str) -> None:
        """Raise IncompatibleConfigError when this component cannot work with the rest of ``run`` (e.g. it needs
        a memory)."""

    def check_steps(self, step_sizes: list[int], prefix: str) -> list[str]:
        """Given the scenario's classes per step (base step first): raise IncompatibleConfigError when this
        component cannot learn with them, or return notes the run prints once (what they make it do)."""
        return []


def half_up(x: float) -> int:
    """x rounded to the nearest integer, halves up (Python's round sends 2.5 to 2: LUCIR's milestone 80 of 160
    epochs became epoch 2 of 5)."""
    return math.floor(x + 0.5)


@dataclass
class OptimConfig:
    """SGD with momentum and a per-epoch learning-rate schedule, rebuilt at every step."""

    lr: float = ranged(0.1, gt=0)
    momentum: float = ranged(0.9, ge=0, lt=1)
    weight_decay: float = ranged(2e-4, ge=0)
    batch_size: int = ranged(128, ge=2, le=2**20, note="(BatchNorm needs 2 samples)")
    epochs: int = ranged(250, ge=1, le=100_000)
    schedule: Literal["multistep", "cosine", "constant"] = "multistep"
    milestones: list[int] = milestones_field(lambda: [100, 150, 200])
    gamma: float = ranged(0.1, gt=0, le=1)
    warmup_epochs: int = ranged(0, ge=0, le=100_000)
    """Linear warm-up: epoch e < W of a step trains at lr * (e + 1) / W, then the schedule (Goyal et al. 2017;
    LDAM-DRW's CIFAR schedule: 5 epochs)."""
    incremental_lr: float | None = ranged(None, gt=0)
    """Learning rate of the incremental steps when it differs from the base step's."""
    lr_per_step: Literal["constant", "inverse"] = "constant"
    """``inverse``: step t starts at lr / (t + 1) (t = 0 the base step), as SS-IL's official main.py does."""
    weight_decay_per_step: Literal["constant", "inverse"] = "constant"
    """``inverse``: step t trains with weight_decay / (t + 1), as the WA authors' code does."""
    weight_decay_on: Literal["all", "weights"] = "all"
    """``weights``: only convolution and linear weights decay, not biases nor BatchNorm's affine parameters
    (iCaRL's Lasagne code regularises only those)."""
    grad_clamp: float | None = ranged(None, gt=0)
    """Clamp every gradient element to [-c, c] before each update (the official PODNet code: 5)."""

    def validate(self, prefix: str) -> None:
        check(
            self.warmup_epochs < self.epochs,
            prefix,
            "warmup_epochs",
            f"must be fewer than the {self.epochs} epochs of a step",
        )

    def step_lr(self, step: int) -> float:
        """The learning rate step ``step`` starts with (before its schedule and warm-up)."""
        lr = self.incremental_lr if (step > 0 and self.incremental_lr is not None) else self.lr
        return lr / (step + 1) if self.lr_per_step == "inverse" else lr

    def step_weight_decay(self, step: int) -> float:
        """The weight decay of step ``step``."""
        return self.weight_decay / (step + 1) if self.weight_decay_per_step == "inverse" else self.weight_decay

    def with_epochs(self, epochs: int) -> OptimConfig:
        """The same schedule stretched to ``epochs``: milestones scale in proportion (unchanged at the same length)."""
        if epochs == self.epochs:
            return self
        scale = epochs / self.epochs
        scaled = [half_up(m * scale) for m in self.milestones]
        milestones = sorted({max(1, m) for m in scaled if m < epochs})
        warmup = min(epochs - 1, max(1, half_up(self.warmup_epochs * scale))) if self.warmup_epochs else 0
        return dataclasses.replace(self, epochs=epochs, milestones=milestones, warmup_epochs=warmup)


@dataclass
class MemoryConfig:
    """Rehearsal memory: ``per_class`` exemplars per class (growing) or a fixed total ``budget``."""

    per_class: int = ranged(20, ge=0, note="(0 = no exemplars)")
    budget: int | None = ranged(None, gt=0)
    selection: Literal["herding", "random"] = "herding"

    @property
    def enabled(self) -> bool:
        return self.budget is not None or self.per_class > 0

    def describe(self) -> str:
        if self.budget is not None:
            return f"fixed budget {self.budget} ({self.selection})"
        if self.per_class == 0:
            return "none (exemplar-free)"
        return f"{self.per_class} per class ({self.selection})"


@dataclass
class ModelConfig:
    """Backbone by name (``auto``: the dataset's default) and the incremental head."""

    backbone: str = "auto"
    head: str = "linear"
    """linear, cosine (LUCIR) or lsc (PODNet's local similarity classifier)."""
    last_relu: bool = True
    """False drops the backbone's final ReLU (LUCIR, PODNet)."""
    head_bias: bool = True
    """The linear head's bias (the WA authors' classifier has none)."""
    shortcut: Literal["A", "B"] = "A"
    """CIFAR ResNets: A = parameter-free strided identity (He et al.), B = 1x1 conv + BN."""
    proxies_per_class: int = ranged(10, ge=1, le=1000)
    """Proxies per class of the lsc head (PODNet: 10)."""
    lsc_similarity: Literal["cosine", "squared-distance"] = "cosine"
    """Proxy similarity of the lsc head: the paper's cosine, or the official code's negative squared
    distance of the normalised vectors, 2 cos - 2 (twice the logits' range, a sharper proxy softmax)."""

    def validate(self, prefix: str) -> None:
        from cil.models import BACKBONES, HEADS

        if self.backbone != "auto" and self.backbone not in BACKBONES:
            raise ConfigError(
                f"unknown backbone '{self.backbone}' ({join_key(prefix, 'backbone')})"
                f"{did_you_mean(self.backbone, ['auto', *BACKBONES])}"
            )
        if self.head not in HEADS:
            raise ConfigError(
                f"unknown head '{self.head}' ({join_key(prefix, 'head')}){did_you_mean(self.head, list(HEADS))}"
            )


@dataclass
class DataConfig:
    """Where the data lives and how much of it a run uses."""

    root: str | None = None
    limit_per_class: int | None = ranged(None, ge=1)
    """Cap on training images per class (the first N of each class), for quick experiments."""
    test_limit_per_class: int | None = ranged(None, ge=1)
    """Cap on test images per class; leave unset for benchmark numbers."""
    num_workers: int | None = ranged(None, ge=0, le=256)
    """Worker processes decoding lazily loaded (large) images; None: one per CPU this process may
    use, at most 8 (``worker_count``)."""

    decode: Literal["auto", "pil", "device"] = "auto"
    """Large images (files): decoded by PIL in the workers, or in batches on the training device
    (torchvision.io.decode_jpeg; nvJPEG on a GPU); auto: device for CUDA runs, pil otherwise."""

    def validate(self, prefix: str) -> None:
        from cil.config.imbalance import ImbalanceProfile

        profile = ImbalanceProfile.parse(self.imbalance, join_key(prefix, "imbalance"))
        self.imbalance = None if profile is None else str(profile)  # one spelling per profile (reports group by it)
        check(
            self.few_shot_below <= self.many_shot_above + 1,
            prefix,
            "few_shot_below",
            f"must be at most many_shot_above + 1 ({self.many_shot_above + 1}): few-shot classes have fewer images "
            "than many-shot ones",
        )

    def worker_count(self) -> int:
        """``num_workers``, or what the machine offers (a 2-core machine gets 2, not 4 and a warning)."""
        if self.num_workers is not None:
            return self.num_workers
        import os

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return min(8, cpus)

    image_size: int | None = ranged(None, ge=8, le=4096)
    """Side of the square input for folder/ImageNet data (default: 32 for small images, 224 else)."""
    brightness_jitter: float = ranged(0.0, ge=0, lt=1)
    """Training brightness jitter: each image scaled by a factor in [1 - b, 1 + b], clamped (torchvision's
    ColorJitter(brightness=b); PODNet on CIFAR and ImageNet: 63/255); small and large (file) images alike."""
    imbalance: str | None = None
    """The training set made imbalanced (cil/config/imbalance.py): ``exp:100`` (long-tailed), ``step:100``,
    ``exp:100:shuffled``, ``step:10:minor=0.3``; None: the dataset as it is. Test sets stay balanced."""
    imbalance_seed: int = ranged(0, ge=0, le=MAX_SEED)
    """Which images an imbalance profile keeps (LDAM-DRW's and Long-Tailed-CIL's ``np.random.seed(0)``)."""
    train_list: str | None = None
    """A text file of ``PATH LABEL`` lines naming the training images of a folder or imagenet dataset (the
    published ImageNet-LT, Places-LT and iNaturalist 2018 splits); paths relative to --data-root."""
    test_list: str | None = None
    """The same for the test images (default: the test/ or val/ folder)."""
    many_shot_above: int = ranged(100, ge=0, le=10**9)
    """Many-shot classes have more than this many training images (OLTR's convention: 100)."""
    few_shot_below: int = ranged(20, ge=1, le=10**9)
    """Few-shot classes have fewer than this many training images (OLTR: 20); the rest are medium-shot."""
    synthetic_classes: int = ranged(100, ge=2, le=1000)
    synthetic_seed: int = ranged(0, ge=0, le=MAX_SEED)
    """Seed of the synthetic dataset's content; independent of the run's seeds."""


@dataclass
class LoggingConfig:
    """Experiment loggers (cil/loggers): observers only, free to change on resume."""

    loggers: list[Literal["tensorboard", "csv", "wandb"]] = field(default_factory=lambda: ["tensorboard"])
    """tensorboard: RUN_DIR/tensorboard; csv: RUN_DIR/logs/*.csv; wandb: a Weights & Biases run."""
    wandb_project: str = "cil"
    wandb_entity: str | None = None
    wandb_mode: Literal["auto", "online", "offline"] = "auto"
    """auto: WANDB_MODE and wandb's own settings; offline: local files only (wandb sync later)."""
    wandb_group: str | None = None
    """The W&B group (None: SCENARIO/STRATEGY, so that the seeds of one method group together)."""
    wandb_tags: list[str] = field(default_factory=list)
    wandb_job_type: str = "train"

    def validate(self, prefix: str) -> None:
        repeated = sorted({name for name in self.loggers if self.loggers.count(name) > 1})
        if repeated:
            raise ConfigError(f"invalid value for '{join_key(prefix, 'loggers')}': '{repeated[0]}' is named twice")
        for i, tag in enumerate(self.wandb_tags):  # W&B refuses these itself, but only once the run has started
            check(
                0 < len(tag) <= WANDB_TAG_LENGTH,
                prefix,
                f"wandb_tags.{i}",
                f"a W&B tag has 1 to {WANDB_TAG_LENGTH} characters, '{tag if len(tag) <= 20 else tag[:20] + '...'}' "
                f"has {len(tag)}",
            )


WANDB_TAG_LENGTH = 64
"""The longest tag W&B accepts."""


@dataclass
class RuntimeConfig:
    """How a run executes on its device (cil/training/runtime.py): numeric precision, memory layout,
    compilation, evaluation batch size. ``auto`` picks per device (docs/performance.md)."""

    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 on CUDA devices that support it, fp32 elsewhere. bf16/fp16: autocast of the
    backbone's forward and the losses (the head always computes in fp32); fp16 adds loss scaling."""
    channels_last: Literal["auto"] | bool = "auto"
    """NHWC memory layout of the backbone and its inputs (auto: true; faster on GPUs and CPUs measured)."""
    compile: bool = False
    """torch.compile the backbone (the head grows every step and stays eager)."""
    eval_batch_size: int | None = ranged(None, ge=1, le=2**20)
    """Batch of evaluation, herding and feature extraction (None: 1024 on CUDA, 256 on the CPU)."""
    threads: int | None = ranged(None, ge=1, le=4096)
    """CPU threads torch computes with (None: torch's default, one per core; a sweep's --jobs workers share
    the cores). Fewer on a loaded machine; a CPU run's results may differ in the last bits with another count."""


@dataclass
class RunConfig:
    """Everything that determines a run; saved resolved in the run directory."""

    scenario: str
    strategy: str
    seed: int = ranged(DEFAULT_SEED, ge=0, le=MAX_SEED)
    """Training seed: initialisation, data order, augmentation."""
    class_order_seed: int = ranged(DEFAULT_SEED, ge=0, le=MAX_SEED)
    """Seed of numpy.random.RandomState(seed).permutation(n_classes), the class order."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = False
    """GPU runs bitwise repeatable (torch.use_deterministic_algorithms; slower). CPU runs always are."""
    out: str | None = None
    progress: bool = True
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    method: ComponentConfig = field(default_factory=lambda: ComponentConfig(name="finetune"))
    loss: ComponentConfig = field(default_factory=lambda: ComponentConfig(name="ce"))
    plugins: list[ComponentConfig] = field(default_factory=list)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


COMPONENT_SECTIONS = ("method", "loss")
"""Top-level keys holding one component; ``plugins`` holds a list of them."""
SECTION_NAMES = tuple(
    f.name
    for f in dataclasses.fields(RunConfig)
    if dataclasses.is_dataclass(f.default_factory) and f.name not in COMPONENT_SECTIONS
)
"""Top-level keys holding a section of settings (memory, model, optim, data, runtime, logging)."""
