"""The plugin contract: what a component (method, classification loss, extra plugin) may read and call
on the engine, and the hooks the engine calls on it. Nothing else is part of it.

A strategy is one method plugin, one classification-loss plugin and optional extra plugins, composed
onto the engine (cil/training/engine.py), which owns the training loop, the optimizer and the
rehearsal memory, and knows no component by name. Components receive the engine as an ``Engine``
(the Protocol below) in every hook; a test runs every named strategy with the engine behind a strict
proxy that fails on any other member (tests/test_plugin_contract.py), so the contract is enforced,
not only described.

Hooks of every ``CilPlugin`` (defaults do nothing), in the order the engine calls them::

    before_step(engine)                     the step's data and head are ready, the optimizer built
      before_epoch(engine)
        before_batch(engine, batch) -> batch   may return another batch (e.g. completed with samples)
        after_forward(engine, output)
        loss_terms(engine, output, targets)    named, weighted terms added to the loss
        after_batch(engine)                    after the optimizer's update
      after_epoch(engine)
    after_training(engine)                  after the memory update: second stages, class statistics
    state_dict() / load_state_dict(state, engine)   what carries from one step to the next

The total training loss is ``engine.classification_weight * L_c + sum(loss_terms)``, a pure function
of the model output, so that it can be re-evaluated on a functional copy of the model (Meta BSCE's
virtual step). Optional hooks (``adjust_logits``, ``adjust_scores``, ``adjust_previous_output``,
``evaluation_name``, ``evaluation_scores``, ``param_groups``, ``epoch_positions``/``epoch_length``, ``backward``,
``loss_class_weights``, ``posthoc_correction``) are the Protocols at the end of this module; a hook marked "at
most one" refuses a strategy where two plugins have it.

What a plugin may change on the engine: the per-step settings ``classification_weight`` and
``train_epochs`` (reset before every step; set them in ``before_step``) and entries of
``step_record`` / ``epoch_scalars`` (values to report). Everything else goes through a named engine
method: ``hold_out``, ``withhold``, ``train_on``. The exemplars are the engine's:
``memory_set`` is a copy, updated after every step's training before any plugin's ``after_training``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, NamedTuple, Protocol, TypeVar, overload

import torch

from cil.errors import UserError

if TYPE_CHECKING:
    from cil.models.net import IncrementalNet, NetOutput
    from cil.training.runtime import Runtime
    from cil.training.training_set import TrainingSet


class Batch(NamedTuple):
    """A training mini-batch on the device: images (in the backbone's layout) and labels."""

    x: torch.Tensor
    y: torch.Tensor


StageLoss = Callable[["NetOutput", torch.Tensor, "NetOutput | None"], dict[str, torch.Tensor]]
"""A second stage's loss: (output, targets, teacher output or None) -> named loss terms (summed)."""


@dataclass
class TrainingStage:
    """A training stage after a step's main training (``Engine.train_on``): balanced finetuning, BiC's
    bias layer, learnable weight scaling. SGD on ``parameters`` only, with the training augmentation, for
    ``epochs`` at ``lr`` divided by 10 at ``milestones`` (or cosine-annealed to 0); momentum, weight decay and
    gradient clamp are the run's unless given."""

    name: str
    training_set: TrainingSet
    parameters: list[torch.Tensor]
    """What the stage trains (leaf tensors that require a gradient: model parameters, or its own)."""
    epochs: int
    lr: float
    milestones: list[int] = field(default_factory=list)
    schedule: Literal["multistep", "cosine"] = "multistep"
    """cosine: epoch e trains at lr * (1 + cos(pi e / epochs)) / 2 (``milestones`` unused)."""
    slow_parameters: list[torch.Tensor] = field(default_factory=list)
    """Trained as well, at ``lr * slow_factor`` (Liu et al.'s weight scales: a tenth of the classifier's rate)."""
    slow_factor: float = 0.1
    epoch_positions: Callable[[], torch.Tensor] | None = None
    """Positions in ``training_set`` of one epoch's samples, drawn anew for every epoch (a class-balanced
    sampler; repetitions allowed); None: a permutation of the set."""
    momentum: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    """None: the run's batch size."""
    frozen_backbone: bool = True
    """The backbone is not trained: its features are computed without gradient (in evaluation mode
    unless ``backbone_train_mode``)."""
    backbone_train_mode: bool = False
    """A frozen backbone in training mode: BatchNorm normalises with batch statistics and re-estimates
    its running statistics on the stage's set (PODNet's balanced finetuning)."""
    augment: bool = True
    """The training augmentation on the stage's images; False: the evaluation transform (BiC's stage 2)."""
    loss: StageLoss | None = None
    """None: the strategy's classification loss on the stage's set (its class counts), unweighted."""
    teacher: bool = False
    """Give ``loss`` the output of a frozen copy of the model as it was when the stage started."""


class Engine(Protocol):
    """The engine as components see it: what they may read and call, and nothing else."""

    # ------------------------------------------------------------------ the step
    @property
    def step(self) -> int:
        """Index of the current step (0: the base step)."""

    @property
    def n_old(self) -> int:
        """N_{t-1}: classes seen before this step (labels 0 .. n_old-1)."""

    @property
    def n_seen(self) -> int:
        """N_t: classes seen up to this step included."""

    @property
    def new_classes(self) -> list[int]:
        """Labels of this step's classes."""

    @property
    def step_classes(self) -> list[list[int]]:
        """Labels of every step's classes, from the base step to this one (each a contiguous range)."""

    @property
    def n_classes_total(self) -> int:
        """Classes of the whole scenario, every step's: the outputs of a network built with all of them from the
        start (iCaRL's code averages its loss over them)."""

    @property
    def device(self) -> torch.device: ...

    @property
    def model(self) -> IncrementalNet:
        """The network being trained (backbone + incremental head)."""

    @property
    def runtime(self) -> Runtime:
        """The run's device settings: ``autocast()``, ``inference()``, ``input(x)``, ``sgd(...)``."""

    # ------------------------------------------------------------------ data
    @property
    def experience_data(self) -> TrainingSet:
        """This step's new training data (store indices and labels)."""

    @property
    def train_set(self) -> TrainingSet:
        """What this step trains on: the new data, the exemplars, what plugins added."""

    @property
    def memory_set(self) -> TrainingSet:
        """A copy of the exemplars of every class stored so far (empty without a memory)."""

    def memory_per_class(self, n_classes: int) -> int:
        """Exemplars per class the memory keeps once ``n_classes`` classes are seen (0 without a memory)."""

    @property
    def train_class_counts(self) -> torch.Tensor:
        """n_i: samples of every seen class in ``train_set``, on the device."""

    @property
    def batch_size(self) -> int:
        """The run's training mini-batch size."""

    @property
    def data_generator(self) -> torch.Generator:
        """The run's data-order generator: draw from it whatever decides which samples are used, so that a
        resumed run repeats an uninterrupted one (it is saved in every checkpoint)."""

    @property
    def epoch(self) -> int:
        """The current epoch of the step, from 0."""

    @property
    def batch_index(self) -> int:
        """The current mini-batch of the step, from 0 (counted over the step's epochs)."""

    # ------------------------------------------------------------------ per-step settings and records
    classification_weight: float
    """The factor of L_c in the total loss (IL-Baseline: 1 - rho). Reset to 1 before every step."""
    train_epochs: int
    """This step's number of epochs (0: no training). Reset from the config before every step."""
    step_record: dict[str, Any]
    """Entries merged into the step's record in results.json."""
    epoch_scalars: dict[str, Any]
    """Learned values logged after every epoch (a 0-d tensor is read at the epoch's end)."""

    # ------------------------------------------------------------------ model outputs and losses
    def previous_output(self) -> NetOutput:
        """The previous step's frozen model on the current mini-batch (no gradient; once per batch), after a
        component's ``adjust_previous_output`` (BiC's bias layer)."""

    def classification_loss(self, output: NetOutput, targets: torch.Tensor) -> torch.Tensor:
        """L_c of the strategy's loss on ``output``, after every plugin's ``adjust_logits`` (unweighted)."""

    def training_loss(self, output: NetOutput, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The total training loss and its named parts (a re-evaluation: plugins keep no statistics)."""

    def trainable_parameter_groups(self) -> list[dict]:
        """What this step trains and at which learning rates (the optimizer's parameter groups)."""

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss as the run's gradients are computed from it (fp16: scaled; the update unscales)."""

    def average_across_processes(self, tensors: list[torch.Tensor]) -> None:
        """Replace every tensor by its mean over the processes of a data-parallel run (no-op in one)."""

    # ------------------------------------------------------------------ features and batches
    def extract_features(self, indices: torch.Tensor, flip: bool = False) -> torch.Tensor:
        """Embeddings (fp32) of training-store samples, evaluation transform (mirrored if ``flip``),
        model in evaluation mode, without gradient."""

    def training_batches(
        self,
        training_set: TrainingSet,
        batch_size: int | None = None,
        order: torch.Tensor | None = None,
        augment: bool = True,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) mini-batches of ``training_set`` with the training augmentation (the evaluation transform
        without ``augment``), in ``order`` (default: a fresh permutation from ``data_generator``)."""

    def evaluation_batches(
        self, training_set: TrainingSet, batch_size: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) mini-batches of ``training_set`` in its order, with the evaluation transform."""

    # ------------------------------------------------------------------ changing the run
    def hold_out(self, per_class: int) -> TrainingSet:
        """Take ``per_class`` random samples of every seen class out of the training set; return them (a
        class-balanced validation set, Meta BSCE's B_t, BiC's validation part)."""

    def withhold(self, per_class: int) -> TrainingSet:
        """Take ``per_class`` random samples of every new class out of this step's data for good: they are not
        trained on and the memory never chooses them; return them (BiC's validation pool, split off before
        training as its code does)."""

    def train_on(self, stage: TrainingStage) -> dict[str, float]:
        """Run a training stage (balanced finetuning, a bias layer); the means of its last epoch's loss terms."""


# ------------------------------------------------------------------------------------------------
# Components
# ------------------------------------------------------------------------------------------------


ConfigT = TypeVar("ConfigT")
"""A component's config dataclass (what ``register`` names with it): ``class BalancedSoftmaxCE(
ClassificationLoss[BSCEConfig])`` lets the type checker check every ``self.config.alpha``."""


class CilPlugin(Generic[ConfigT]):
    """A component of a strategy; subclasses override the hooks they need (module docstring)."""

    data_parallel = True
    """False: the plugin keeps per-process state (gradient statistics, its own backward) that the
    processes of a data-parallel run would not share; such a strategy is refused under torchrun."""

    def __init__(self, config: ConfigT = None):  # type: ignore[assignment]  # None: a plugin without settings
        self.config: ConfigT = config

    def before_step(self, engine: Engine) -> None:
        """The step's data, head and optimizer are ready (set per-step settings, imprint, hold out)."""

    def before_epoch(self, engine: Engine) -> None:
        """Before each training epoch of the step."""

    def before_batch(self, engine: Engine, batch: Batch) -> Batch:
        """Before the forward pass of a training mini-batch: the batch to train on (``batch`` unchanged
        by default; a plugin may return one with more samples)."""
        return batch

    def after_forward(self, engine: Engine, output: NetOutput) -> None:
        """After the model's forward pass on the training mini-batch."""

    def loss_terms(self, engine: Engine, output: NetOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named, weighted loss terms for this mini-batch (none by default)."""
        return {}

    def after_batch(self, engine: Engine) -> None:
        """After the optimizer's update of a training mini-batch."""

    def after_epoch(self, engine: Engine) -> None:
        """After each training epoch (its loss means are known)."""

    def after_training(self, engine: Engine) -> None:
        """After the step's training and the memory update, before evaluation."""

    def state_dict(self) -> dict:
        """What this plugin learned that later steps need (saved in every step's checkpoint)."""
        return {}

    def load_state_dict(self, state: dict, engine: Engine) -> None:
        """Restore ``state_dict()`` when a run resumes after a completed step."""


class ClassificationLoss(CilPlugin[ConfigT], ABC):
    """Turns logits into the classification loss L_c; exactly one per strategy."""

    @abstractmethod
    def classification_loss(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """L_c of the mini-batch from its logits (after every plugin's ``adjust_logits``)."""

    def sample_losses(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """L_c of every sample [B] (their mean is ``classification_loss``), or None for a loss that is not a mean
        of per-sample values; a plugin weighting classes (``loss_class_weights``: DRW) needs it."""
        return None


AVALANCHE_CALLBACKS = (
    "before_training_exp",
    "after_training_exp",
    "before_training_epoch",
    "after_training_epoch",
    "before_forward",
    "before_training_iteration",
    "after_training_iteration",
    "after_eval_forward",
    "before_backward",
    "after_update",
)
"""Avalanche callback names a cil component does not receive (they name cil's hooks by other names)."""

CALLBACK_RENAMES = {
    "before_training_exp": "before_step",
    "after_training_exp": "after_training",
    "before_training_epoch": "before_epoch",
    "after_training_epoch": "after_epoch",
    "before_forward": "before_batch",
    "before_training_iteration": "before_batch",
    "after_training_iteration": "after_batch",
    "after_update": "after_batch",
    "after_eval_forward": "evaluation_scores",
    "before_backward": "loss_terms",
}


# ------------------------------------------------------------------------------------------------
# Optional hooks
# ------------------------------------------------------------------------------------------------


class AdjustsLogits(Protocol):
    def adjust_logits(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor, record: bool) -> torch.Tensor:
        """Logits as the classification loss sees them in training (``record``: the real mini-batch,
        not a re-evaluation such as Meta BSCE's virtual step)."""


class AdjustsScores(Protocol):
    def adjust_scores(self, engine: Engine, scores: torch.Tensor) -> torch.Tensor:
        """Post-hoc change of the evaluation scores [N, n_seen] of all test images of a step at once."""


class NamesEvaluation(Protocol):
    evaluation_name: str
    """How this plugin makes predictions ("nme", "ncm", ...), recorded as the run's ``eval``."""


class AdjustsPreviousOutput(Protocol):
    def adjust_previous_output(self, engine: Engine, output: NetOutput) -> NetOutput:
        """The previous step's model's output as distillation sees it (BiC: through the bias layer learned for
        it); what ``engine.previous_output()`` returns."""


class ScoresEvaluation(Protocol):
    def evaluation_scores(self, engine: Engine, output: NetOutput) -> torch.Tensor:
        """The scores [B, n_seen] of an evaluation mini-batch, from the model's output (its features)
        instead of the classifier's logits."""


class EditsParamGroups(Protocol):
    def param_groups(self, engine: Engine, groups: list[dict], lr: float) -> list[dict]:
        """The optimizer's parameter groups for this step (e.g. frozen weights removed); what is left out
        is not trained, by the real step or by a virtual one (``trainable_parameter_groups``)."""


class SamplesBatches(Protocol):
    def epoch_positions(self, engine: Engine) -> torch.Tensor:
        """Positions in ``engine.train_set`` of one epoch's mini-batches, in order (repetitions allowed)."""

    def epoch_length(self, engine: Engine) -> int:
        """How many positions ``epoch_positions`` returns."""


class CombinesGradients(Protocol):
    def backward(
        self, engine: Engine, output: NetOutput, targets: torch.Tensor, terms: dict[str, torch.Tensor]
    ) -> None:
        """Compute the parameters' gradients from the mini-batch's output and loss terms (``terms``: the
        weighted parts of the total loss, with their graphs), instead of ``total.backward()``; gradients
        come from ``engine.scale_loss(...)``."""


class WeighsClasses(Protocol):
    def loss_class_weights(self, engine: Engine) -> torch.Tensor | None:
        """Weights [n_seen] of each class's samples in L_c, or None (unweighted): L_c becomes the weighted mean
        sum_i w_{y_i} l_i / sum_i w_{y_i} of the loss's ``sample_losses``, as torch's ``cross_entropy(weight=w)``
        (deferred re-weighting, Cao et al. 2019)."""


class CorrectsBias(Protocol):
    posthoc_correction: str
    """A bias correction applied after a step's training (balanced finetuning, weight aligning, a bias
    layer, nearest-mean classification): one per strategy, their effects would not add up."""


@dataclass(frozen=True)
class Hook:
    protocol: type
    at_most_one: bool
    what: str
    """What the plugins having this hook do, for the error when two of them cannot be combined."""

    @property
    def members(self) -> tuple[str, ...]:
        """The protocol's attributes, in declaration order: a plugin that has one of them must have all."""
        names = [*getattr(self.protocol, "__annotations__", {}), *vars(self.protocol)]
        return tuple(dict.fromkeys(n for n in names if not n.startswith("_")))


HOOKS: dict[str, Hook] = {
    "adjust_logits": Hook(AdjustsLogits, True, "adjust the training logits"),
    "adjust_scores": Hook(AdjustsScores, True, "adjust the evaluation scores"),
    "adjust_previous_output": Hook(AdjustsPreviousOutput, True, "adjust the previous model's output"),
    "evaluation_name": Hook(NamesEvaluation, True, "decide how predictions are made"),
    "evaluation_scores": Hook(ScoresEvaluation, True, "score the evaluation images"),
    "param_groups": Hook(EditsParamGroups, False, "edit the optimizer's parameter groups"),
    "epoch_positions": Hook(SamplesBatches, True, "choose the mini-batches"),
    "backward": Hook(CombinesGradients, True, "compute the gradients"),
    "loss_class_weights": Hook(WeighsClasses, True, "weight the classification loss by class"),
    "posthoc_correction": Hook(CorrectsBias, True, "correct the bias toward new classes after training"),
}
"""Every optional hook by its attribute name; the engine looks up no other."""


class PluginHooks:
    """The plugins of a strategy sorted by the optional hooks they implement, checked once."""

    def __init__(self, plugins: list):
        self._by_hook: dict[str, list] = {}
        for plugin in plugins:
            _refuse_avalanche_callbacks(plugin)
        for name, hook in HOOKS.items():
            having = [p for p in plugins if any(hasattr(p, m) for m in hook.members)]
            if hook.at_most_one and len(having) > 1:
                names = " and ".join(_plugin_name(p) for p in having)
                raise UserError(f"plugins {names} both {hook.what}; use one of them")
            for plugin in having:
                missing = [m for m in hook.members if not hasattr(plugin, m)]
                if missing:
                    present = [m for m in hook.members if m not in missing]
                    raise UserError(
                        f"plugin {type(plugin).__name__} has {', '.join(present)} but not "
                        f"{', '.join(missing)}; a plugin that does one needs all of them"
                    )
            self._by_hook[name] = having

    @overload
    def all(self, hook: Literal["adjust_logits"]) -> list[AdjustsLogits]: ...
    @overload
    def all(self, hook: Literal["adjust_scores"]) -> list[AdjustsScores]: ...
    @overload
    def all(self, hook: Literal["param_groups"]) -> list[EditsParamGroups]: ...
    def all(self, hook: str) -> list[Any]:
        """Every plugin with ``hook``, in the strategy's plugin order."""
        return self._by_hook[hook]

    @overload
    def one(self, hook: Literal["adjust_previous_output"]) -> AdjustsPreviousOutput | None: ...
    @overload
    def one(self, hook: Literal["evaluation_name"]) -> NamesEvaluation | None: ...
    @overload
    def one(self, hook: Literal["evaluation_scores"]) -> ScoresEvaluation | None: ...
    @overload
    def one(self, hook: Literal["epoch_positions"]) -> SamplesBatches | None: ...
    @overload
    def one(self, hook: Literal["backward"]) -> CombinesGradients | None: ...
    @overload
    def one(self, hook: Literal["loss_class_weights"]) -> WeighsClasses | None: ...
    @overload
    def one(self, hook: Literal["posthoc_correction"]) -> CorrectsBias | None: ...
    def one(self, hook: str) -> Any:
        """The plugin with ``hook`` (None if none); only for hooks at most one plugin may have."""
        assert HOOKS[hook].at_most_one, hook
        having = self._by_hook[hook]
        return having[0] if having else None


def _plugin_name(plugin: object) -> str:
    """A plugin's name in messages: its component name (``posthoc_correction`` names the correction)."""
    config = getattr(plugin, "config", None)
    return getattr(config, "name", None) or type(plugin).__name__


def _refuse_avalanche_callbacks(plugin: object) -> None:
    """A cil component that defines an Avalanche callback would never be called there: say which hook it means."""
    for name in AVALANCHE_CALLBACKS:
        if callable(getattr(plugin, name, None)):
            hint = f"; cil calls {CALLBACK_RENAMES[name]}(engine, ...)" if name in CALLBACK_RENAMES else ""
            raise UserError(
                f"plugin {type(plugin).__name__} defines the Avalanche callback '{name}', which cil "
                f"components do not receive{hint} (docs/strategies.md, 'The plugin contract')"
            )


def engine_members() -> frozenset[str]:
    """Every member of the ``Engine`` protocol (what a component may touch)."""
    names = {n for n in vars(Engine) if not n.startswith("_")} | set(Engine.__annotations__)
    return frozenset(names)


WRITABLE_MEMBERS = frozenset({"classification_weight", "train_epochs"})
"""What a component may assign on the engine (``step_record`` and ``epoch_scalars`` are dicts it fills)."""


def without_parameters(groups: list[dict], excluded: Iterable[torch.Tensor]) -> list[dict]:
    """Optimizer parameter groups with ``excluded`` parameters removed (frozen: no update, no decay)."""
    ids = {id(p) for p in excluded}
    return [{**g, "params": [p for p in g["params"] if id(p) not in ids]} for g in groups]


def require_head(engine: Engine, head_type: type, method: str, head_name: str) -> None:
    """One clear error when a method runs with the wrong classifier head."""
    if not isinstance(engine.model.head, head_type):
        raise UserError(f"{method} needs model.head: {head_name} (got {type(engine.model.head).__name__})")
