"""The engine: one SGD loop for every method, the method living in its components (cil/training/contract.py).

``run_steps`` calls ``TrainingEngine.run_step`` for every step t of the scenario; that one method shows a
step's order::

    begin_step      the step's data (cil's plan) + the exemplars; the head grown to N_t; the optimizer
    epochs          training_epoch: order, then for every mini-batch
                      before_batch -> forward -> after_forward -> loss -> backward -> update -> after_batch
    end_step        the memory update (herding), then the components' second stages and statistics;
                    a frozen copy of the model, the teacher of step t+1
    evaluation      scores of the test images of every seen class (``evaluate``)

cil drives the step; Avalanche only supplies the streams and its plugin callbacks. The engine subclasses
Avalanche's ``SupervisedTemplate`` for the state Avalanche plugins and metrics read (``experience``,
``mbatch``/``mb_x``/``mb_y``, ``mb_output``, ``loss``, ``clock``, ``evaluator``, ``is_training``), but calls
neither its ``train`` nor its ``eval`` nor any of its private methods: Avalanche plugins given to it
(``avalanche_plugins``; an ``EvaluationPlugin`` among them becomes the evaluator) receive Avalanche's callbacks
from ``run_step``, ``training_epoch`` and ``evaluate``, through Avalanche's public ``trigger_plugins``, after cil's
hooks at the same place. cil's components receive cil's hooks with the engine as an ``Engine`` (the Protocol of
cil/training/contract.py), in the strategy's order: method, extra plugins, classification loss.

The per-batch path (data, forward, losses, backward, update, and every hook called in it) reads no
device value on the host, so a GPU never waits for Python: loss sums stay on the device until the end
of the epoch (cil/training/epoch_losses.py). docs/performance.md lists the exceptions.
"""

from __future__ import annotations

import copy
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from avalanche.training.utils import trigger_plugins

from cil.config import OptimConfig, RuntimeConfig
from cil.config.shapes import INT, NULL, SECTION, ListOf, Mapping, OneOf
from cil.errors import TrainingDiverged, UserError
from cil.training.contract import Batch, CilPlugin, ClassificationLoss, Engine, PluginHooks, TrainingStage
from cil.training.distributed import SINGLE, World
from cil.training.epoch_losses import EpochLosses
from cil.training.memory import Rehearsal
from cil.training.progress import bars_visible, progress_bar
from cil.training.random_state import capture_rng, restore_rng
from cil.training.runtime import Runtime
from cil.training.schedules import warmed_up_factor
from cil.training.training_set import TrainingSet, balanced_split
from cil.training.weight_decay import without_decay_on_biases_and_norms

if TYPE_CHECKING:
    from cil.data.base import ImageData
    from cil.data.scenarios import ScenarioPlan
    from cil.models import IncrementalNet, NetOutput

    class _AvalancheTemplate:
        """What the engine uses of Avalanche's ``SupervisedTemplate``, typed. Avalanche ships no type information:
        a base class mypy cannot see would lend the engine every attribute, and a member of ``Engine`` renamed or
        removed here would still pass ``make lint``. With this stand-in, ``TrainingEngine.view`` returning
        ``self`` as an ``Engine`` is the type checker's proof that the engine keeps the contract."""

        model: IncrementalNet
        device: torch.device
        plugins: list[Any]
        experience: Any
        is_training: bool
        train_epochs: int
        train_mb_size: int
        eval_mb_size: int
        optimizer: torch.optim.Optimizer
        retain_graph: bool
        mbatch: list[torch.Tensor] | None
        mb_output: Any
        loss: torch.Tensor
        dataloader: Any
        adapted_dataset: Any
        current_eval_stream: Any
        _stop_training: bool

        def __init__(self, **settings: Any) -> None: ...
        @property
        def mb_x(self) -> torch.Tensor: ...
        @property
        def mb_y(self) -> torch.Tensor: ...
        def train_dataset_adaptation(self) -> None: ...
        def eval_dataset_adaptation(self) -> None: ...
else:
    _AvalancheTemplate = SupervisedTemplate


class Evaluation(NamedTuple):
    """A step's evaluation on the test images of every seen class."""

    scores: np.ndarray
    """[N, n_seen]: what predictions are made from (the classifier's logits, or a component's scores)."""
    targets: np.ndarray
    """[N]: labels."""
    classifier_scores: np.ndarray | None = None
    """The classifier's own logits when predictions come from something else (nearest mean of exemplars, a
    bias correction), so that both accuracies are reported; None when they are the scores."""


@dataclass(frozen=True)
class EpochResult:
    """What an epoch leaves for the run's loggers."""

    step: int
    epochs_done: int
    """Training epochs over all steps so far, this one included (the x axis of per-epoch logs)."""
    loss_parts: dict[str, float]
    """Mean of every loss term over the epoch's mini-batches."""
    lr: float
    """The learning rate the epoch trained with (first parameter group)."""
    learned: dict[str, float]
    """The components' ``epoch_scalars`` (e.g. Meta BSCE's alpha)."""


def _evaluator() -> EvaluationPlugin:
    """Avalanche's evaluator when the user gives none: no metrics and no loggers (cil computes and gathers its own
    across ranks), so it is safe data-parallel: it says so, and Avalanche does not warn about it in every
    data-parallel run."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No loggers specified")
        evaluator = EvaluationPlugin(loggers=[])
    evaluator.supports_distributed = True
    return evaluator


class TrainingEngine(_AvalancheTemplate):
    """One SGD strategy for every method; the method lives in its components."""

    world: World = SINGLE
    _stop_training: bool
    """Set by an Avalanche plugin (early stopping) to end the step's training."""

    def __init__(
        self,
        *,
        model: IncrementalNet,
        plan: ScenarioPlan,
        train_data: ImageData,
        test_data: ImageData,
        optim: OptimConfig,
        loss: ClassificationLoss,
        plugins: list[CilPlugin],
        device: torch.device,
        seed: int,
        memory: Rehearsal | None = None,
        runtime: Runtime | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
        world: World = SINGLE,
        avalanche_plugins: list | None = None,
        on_epoch: Callable[[EpochResult], None] | None = None,
    ):
        self.world = world
        """This process's rank among the run's processes (cil/training/distributed.py); SINGLE for one."""
        runtime = runtime if runtime is not None else Runtime.resolve(RuntimeConfig(precision="fp32"), device)
        plugins_of_avalanche = list(avalanche_plugins or [])
        evaluators = [p for p in plugins_of_avalanche if isinstance(p, EvaluationPlugin)]
        if len(evaluators) > 1:
            raise UserError("give the engine at most one Avalanche EvaluationPlugin (it is Avalanche's evaluator)")
        super().__init__(
            model=model,
            optimizer=None,  # built for every step (its parameter groups are the components')
            train_mb_size=optim.batch_size,
            train_epochs=optim.epochs,
            eval_mb_size=runtime.eval_batch_size,
            device=device,
            plugins=[p for p in plugins_of_avalanche if not isinstance(p, EvaluationPlugin)],
            evaluator=evaluators[0] if evaluators else _evaluator(),
            eval_every=-1,
        )
        self.runtime = runtime
        self.loss_scaler = runtime.loss_scaler()
        """Backward pass and optimizer step (fp16: with dynamic loss scaling), kept across steps."""
        runtime.prepare(model.to(self.device))
        self.plan = plan
        self.train_data, self.test_data = train_data, test_data
        self.optim_config = optim
        self.progress = progress
        self.log = log if log is not None else (lambda line: print(line, file=sys.stderr))
        """Where progress lines go when stderr is not a terminal (one per epoch instead of a bar)."""
        self.on_epoch = on_epoch
        self._order_generator = torch.Generator().manual_seed(seed)
        self._augment_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.loss_component = loss
        self.components: list[CilPlugin] = [*plugins, loss]
        """The strategy's cil components in hook order: method, extra plugins, classification loss."""
        self.hooks = PluginHooks(self.components)
        self.memory = memory
        """The rehearsal memory (None: exemplar-free), updated by the engine after every step's training."""
        namer = self.hooks.one("evaluation_name")
        self.evaluation_name = namer.evaluation_name if namer is not None else "cnn"
        """How predictions are made: "cnn" (classifier argmax) unless a component says otherwise (e.g. "nme")."""
        self.scorer = self.hooks.one("evaluation_scores")
        corrector = self.hooks.one("posthoc_correction")
        self.weight_corrector = (
            corrector
            if corrector is not None
            and corrector is not self.scorer
            and corrector not in self.hooks.all("adjust_scores")
            else None
        )
        """A post-hoc correction that changes the model itself (weight aligning, balanced finetuning): the step is
        also evaluated before it, so that the uncorrected classifier's accuracy is reported beside the corrected."""
        self.evaluation_experiences: list[Any] = []
        """The test experiences the step is evaluated on (set before each step by ``run_steps``)."""
        self._uncorrected_scores: np.ndarray | None = None
        self.batch_sampler = self.hooks.one("epoch_positions")
        self.gradient_combiner = self.hooks.one("backward")
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.previous_model: IncrementalNet | None = None
        self.step = -1
        self.n_old = 0
        self.n_seen = 0
        self.new_classes: list[int] = []
        self.epoch = 0
        self.batch_index = 0
        self.classification_weight = 1.0
        self.experience_data = TrainingSet.empty()
        self._train_set = self.experience_data
        self.step_record: dict[str, Any] = {}
        self.epoch_scalars: dict[str, Any] = {}
        self.loss_parts: dict[str, float] = {}
        """Mean of every loss term over the last epoch (read once per epoch)."""
        self.epochs_done = 0
        """Training epochs over all steps so far."""
        self.batch_loss_parts: dict[str, torch.Tensor] = {}
        """The current mini-batch's weighted loss terms, with their graphs (for Avalanche plugins)."""
        self._batch: Batch | None = None
        self._epoch_losses = EpochLosses()
        self._epoch_images = 0
        self._epoch_lr = 0.0
        self._step_start = 0.0
        self._train_class_counts: tuple[TrainingSet, torch.Tensor] | None = None
        self._epoch_start = 0.0
        self._epoch_seconds: list[float] = []
        self._iteration = 0
        self._previous_output_cache: tuple[int, Any] | None = None
        self._eval_scores: list[torch.Tensor] = []
        self._eval_targets: list[torch.Tensor] = []
        self._eval_logits: list[torch.Tensor] = []
        self._bar = None

    # ================================================================ what components see (the Engine protocol)

    @property
    def view(self) -> Engine:
        """The engine as its components are given it in every hook."""
        return self

    @property
    def train_set(self) -> TrainingSet:
        """What this step trains on (changed only by ``hold_out``, ``withhold`` and ``train_on``)."""
        return self._train_set

    @property
    def memory_set(self) -> TrainingSet:
        """A copy of the exemplars of every stored class (after a step's training: its new classes included)."""
        return self.memory.exemplars().copy() if self.memory is not None else TrainingSet.empty()

    @property
    def batch_size(self) -> int:
        return self.train_mb_size

    @property
    def step_classes(self) -> list[list[int]]:
        return [list(classes) for classes in self.plan.step_classes[: self.step + 1]]

    @property
    def n_classes_total(self) -> int:
        return sum(len(classes) for classes in self.plan.step_classes)

    @property
    def data_generator(self) -> torch.Generator:
        return self._order_generator

    @property
    def train_class_counts(self) -> torch.Tensor:
        """n_i: training samples of each seen class in the current training set, on the device
        (counted once per training set on the host, so asking for it per batch costs nothing)."""
        cached = self._train_class_counts
        if cached is None or cached[0] is not self._train_set or len(cached[1]) != self.n_seen:
            counts = torch.bincount(self._train_set.labels, minlength=self.n_seen).float().to(self.device)
            self._train_class_counts = cached = (self._train_set, counts)
        return cached[1]

    def memory_per_class(self, n_classes: int) -> int:
        return self.memory.memory.quota(n_classes) if self.memory is not None else 0

    def withhold(self, per_class: int) -> TrainingSet:
        """``per_class`` random samples of every new class leave the step's data (and so the memory's choice)."""
        self.experience_data, withheld = balanced_split(
            self.experience_data, self.new_classes, per_class, self._order_generator
        )
        self._train_set = self._train_set.subset(~torch.isin(self._train_set.indices, withheld.indices))
        return withheld

    def hold_out(self, per_class: int) -> TrainingSet:
        """``per_class`` random samples of every seen class leave the training set; they are returned."""
        self._train_set, held_out = balanced_split(self._train_set, self.n_seen, per_class, self._order_generator)
        return held_out

    def previous_output(self) -> NetOutput:
        """The previous step's model on the current mini-batch (no gradient), computed once per iteration."""
        if self.previous_model is None or self._batch is None:
            raise RuntimeError("there is no previous model at the base step")
        if self._previous_output_cache is None or self._previous_output_cache[0] != self._iteration:
            with torch.no_grad(), self.runtime.autocast():
                output = self.previous_model(self._batch.x)
                adjuster = self.hooks.one("adjust_previous_output")
                if adjuster is not None:
                    output = adjuster.adjust_previous_output(self.view, output)
            self._previous_output_cache = (self._iteration, output)
        return self._previous_output_cache[1]

    def training_loss(
        self, output: NetOutput, targets: torch.Tensor, record: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its named parts: weight * L_c + every component's loss terms.

        ``record`` marks the real mini-batch (components may keep statistics of it), as opposed to a
        re-evaluation such as Meta BSCE's virtual step.
        """
        parts = {"classification": self.classification_weight * self.classification_loss(output, targets, record)}
        for component in self.components:
            if component is not self.loss_component:
                parts.update(component.loss_terms(self.view, output, targets))
        return sum(parts.values()), parts  # type: ignore[return-value]

    def classification_loss(self, output: NetOutput, targets: torch.Tensor, record: bool = False) -> torch.Tensor:
        """L_c of the loss component on the logits, after every component's ``adjust_logits``."""
        logits = output.logits
        for component in self.hooks.all("adjust_logits"):
            logits = component.adjust_logits(self.view, logits, targets, record)
        weighing = self.hooks.one("loss_class_weights")
        weights = weighing.loss_class_weights(self.view) if weighing is not None else None
        if weights is None:
            return self.loss_component.classification_loss(self.view, logits, targets)
        per_sample = self.loss_component.sample_losses(self.view, logits, targets)
        assert per_sample is not None, "refused before the run by the weighing plugin's validate_with"
        sample_weights = weights.to(per_sample.dtype)[targets]
        return (sample_weights * per_sample).sum() / sample_weights.sum()

    def trainable_parameter_groups(self) -> list[dict]:
        """What this step trains and at which learning rate: the optimizer's parameter groups (built from
        every component's ``param_groups``), the one source of truth for the real step and for virtual ones."""
        return [{"params": list(g["params"]), "lr": g["lr"]} for g in self.optimizer.param_groups]

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return self.loss_scaler.scale(loss)

    def average_across_processes(self, tensors: list[torch.Tensor]) -> None:
        self.world.average_(tensors)

    def training_batches(
        self,
        training_set: TrainingSet,
        batch_size: int | None = None,
        order: torch.Tensor | None = None,
        augment: bool = True,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) augmented mini-batches of ``training_set`` in ``order`` (default: a fresh random one); without
        ``augment``, with the evaluation transform."""
        batch_size = batch_size or self.batch_size
        if order is None:
            order = torch.randperm(len(training_set), generator=self._order_generator)
        smallest = 2 * self.world.size  # BatchNorm needs two samples in every rank's chunk
        if 0 < len(order) % batch_size < smallest and len(order) > batch_size:
            order = order[: len(order) - len(order) % batch_size]
        indices, labels = training_set.indices[order], training_set.labels[order]
        labels = labels.to(self.device)  # once per epoch, not once per batch
        sharded = {"shard": (self.world.rank, self.world.size)} if self.world.active else {}  # one process: no shard
        images = self.train_data.batches(
            indices, batch_size, train=augment, device=self.device, generator=self._augment_generator, **sharded
        )
        for x, y in zip(images, labels.split(batch_size)):
            yield self.runtime.input(x), self.world.chunk(y)

    def evaluation_batches(
        self, training_set: TrainingSet, batch_size: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) mini-batches of training-store samples in their order, with the evaluation transform."""
        batch_size = batch_size or self.batch_size
        images = self.train_data.batches(training_set.indices, batch_size, train=False, device=self.device)
        for x, y in zip(images, training_set.labels.to(self.device).split(batch_size)):
            yield self.runtime.input(x), y

    def extract_features(self, indices: torch.Tensor, flip: bool = False) -> torch.Tensor:
        """Embeddings (fp32) of training-store samples with the evaluation transform (mirrored if ``flip``),
        model in eval mode, in evaluation-sized batches under inference mode and the run's precision."""
        was_training = self.model.training
        self.model.eval()
        try:
            with self.runtime.inference(), self.runtime.autocast():
                feats = [
                    self.model.backbone(self.runtime.input(x.flip(3) if flip else x)).features.float()
                    for x in self.train_data.batches(
                        self.world.chunk(indices), self.eval_mb_size, train=False, device=self.device
                    )
                ]
                features = (
                    torch.cat(feats) if feats else torch.empty(0, self.model.backbone.out_dim, device=self.device)
                )
        finally:
            self.model.train(was_training)
        return self.world.gather_rows(features.clone())  # normal tensors (inference ones cannot enter autograd)

    def train_on(self, stage: TrainingStage) -> dict[str, float]:
        """A training stage after the step's main training: SGD on ``stage.parameters`` over ``stage.training_set``
        (its class counts are the ones count-based losses see meanwhile); the means of its last epoch's terms."""
        model, runtime, optim = self.model, self.runtime, self.optim_config
        groups: list[dict] = [{"params": list(stage.parameters)}]
        if stage.slow_parameters:
            groups.append({"params": list(stage.slow_parameters), "lr": stage.lr * stage.slow_factor})
        optimizer = runtime.sgd(
            groups,
            lr=stage.lr,
            momentum=optim.momentum if stage.momentum is None else stage.momentum,
            weight_decay=optim.weight_decay if stage.weight_decay is None else stage.weight_decay,
        )
        scheduler: torch.optim.lr_scheduler.LRScheduler
        if stage.schedule == "cosine":
            factor = partial(warmed_up_factor, "cosine", [], 1.0, 0, stage.epochs)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        else:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, stage.milestones, 0.1)
        scaler = runtime.loss_scaler()
        trained = {id(p) for p in [*stage.parameters, *stage.slow_parameters]}
        head_trained = any(id(p) in trained for p in model.head.parameters())
        teacher = self.frozen_copy() if stage.teacher else None
        losses = EpochLosses()
        saved, self._train_set = self._train_set, stage.training_set
        try:
            for _ in range(stage.epochs):
                model.train()
                if stage.frozen_backbone and not stage.backbone_train_mode:
                    model.backbone.eval()
                losses = EpochLosses()
                order = stage.epoch_positions() if stage.epoch_positions is not None else None
                for x, y in self.training_batches(stage.training_set, stage.batch_size, order, stage.augment):
                    self._iteration += 1  # previous_output() answers for this batch
                    self._batch = Batch(x, y)
                    output = self._stage_forward(x, stage.frozen_backbone, head_trained)
                    teacher_output = None
                    if teacher is not None:
                        with torch.no_grad(), runtime.autocast():
                            teacher_output = teacher(x)
                    if stage.loss is None:
                        terms = {"loss": self.loss_component.classification_loss(self.view, output.logits, y)}
                    else:
                        with runtime.autocast():
                            terms = stage.loss(output, y, teacher_output)
                    optimizer.zero_grad()
                    scaler.backward(sum(terms.values()))  # type: ignore[arg-type]
                    self.average_gradients(optimizer)
                    scaler.step(optimizer, clamp=optim.grad_clamp)
                    losses.add(terms)
                scheduler.step()
        finally:
            self._train_set = saved
            model.train()
        return losses.means()

    def _stage_forward(self, x: torch.Tensor, frozen_backbone: bool, head_trained: bool) -> NetOutput:
        """The model's output for a training stage: a frozen backbone's features without gradient, the head in
        fp32 (without gradient too when nothing in it trains)."""
        from cil.models.net import NetOutput

        if not frozen_backbone:
            with self.runtime.autocast():
                return self.model(x)  # the head computes in fp32
        with torch.no_grad(), self.runtime.autocast():
            out = self.model.backbone(x)
        features = out.features.float()
        with torch.set_grad_enabled(head_trained and torch.is_grad_enabled()):
            logits = self.model.head(features)
        return NetOutput(logits, features, out.stage_maps, getattr(self.model.head, "scale", None))

    # ================================================================ one step: its order, in one place

    def run_step(self, experience: Any, test_experiences: list[Any]) -> tuple[Evaluation, float]:
        """Train on ``experience`` (step t), then evaluate on the test images of every seen class; the evaluation
        and the seconds the training took (memory update and second stages included).

        cil's hooks (components, in the strategy's order) and Avalanche's callbacks (``avalanche_plugins``,
        after cil's hooks at the same place) fire here and in ``training_epoch``, nowhere else::

            begin_step   Avalanche before_training; the step's data (cil's plan) + the exemplars, between
                         Avalanche's before/after_train_dataset_adaptation; the head grown to N_t; the
                         optimizer; components' before_step; Avalanche before_training_exp
            epochs       begin_epoch (before_epoch; before_training_epoch), training_epoch, end_epoch (the
                         schedule, the loss means, after_epoch; after_training_epoch); an Avalanche plugin may
                         end them early (``stop_training()``)
            end_step     the memory update; the uncorrected evaluation (a correction that changes the model);
                         components' after_training; Avalanche after_training_exp, after_training; the frozen
                         teacher of step t+1
            evaluation   ``evaluate``: Avalanche's eval callbacks around cil's scoring of every test experience
        """
        start = time.perf_counter()
        self._begin_step(experience, test_experiences)
        for epoch in range(self.train_epochs):
            self.epoch = epoch
            self._begin_epoch()
            if self._stop_training:  # an Avalanche plugin stopped the step early
                self._stop_training = False
                break
            self.training_epoch()
            self._end_epoch()
        self._end_step()
        train_seconds = time.perf_counter() - start
        return self.evaluate(test_experiences), train_seconds

    def _begin_step(self, experience: Any, test_experiences: list[Any]) -> None:
        self.is_training, self._stop_training = True, False
        self.model.train()
        self.model.to(self.device)
        trigger_plugins(self, "before_training")
        self.experience = experience
        self._test_experiences = test_experiences
        self.step = experience.current_experience
        self.new_classes = list(self.plan.step_classes[self.step])
        self.n_old = self.plan.n_seen(self.step - 1) if self.step > 0 else 0
        self.n_seen = self.plan.n_seen(self.step)
        self.experience_data = TrainingSet(
            *map(torch.from_numpy, self.plan.step_samples(self.step, self.train_data.targets))
        )
        self.classification_weight = 1.0
        self.train_epochs = self.optim_config.epochs  # components may change it for this step (0: no training)
        self.step_record = {}
        self.epoch_scalars = {}
        self.loss_parts = {}  # a step that trains no epoch (frozen features) reports no loss
        self.epoch = self.batch_index = 0
        self._epoch_seconds = []
        self._step_start = time.perf_counter()
        trigger_plugins(self, "before_train_dataset_adaptation")
        self.train_dataset_adaptation()  # Avalanche's adapted_dataset, for Avalanche plugins
        self._train_set = self.experience_data
        if self.memory is not None and len(exemplars := self.memory.exemplars()):
            self._train_set = self._train_set + exemplars
        trigger_plugins(self, "after_train_dataset_adaptation")
        if self.model.n_classes < self.n_seen:
            self.model.head.add_classes(self.n_seen - self.model.n_classes)
        self.model.to(self.device)
        self._make_optimizer()
        for component in self.components:
            component.before_step(self.view)
        trigger_plugins(self, "before_training_exp")

    def _make_optimizer(self) -> None:
        """The step's SGD over the trainable parameters (every component's ``param_groups``) and its schedule."""
        cfg = self.optim_config
        lr, weight_decay = cfg.step_lr(self.step), cfg.step_weight_decay(self.step)
        self.step_record["lr"], self.step_record["weight_decay"] = lr, weight_decay
        groups: list[dict] = [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        for component in self.hooks.all("param_groups"):
            groups = component.param_groups(self.view, groups, lr)
        if cfg.weight_decay_on == "weights":
            groups = without_decay_on_biases_and_norms(groups)
        self.optimizer = self.runtime.sgd(groups, lr=lr, momentum=cfg.momentum, weight_decay=weight_decay)
        if cfg.warmup_epochs > 0:  # a linear ramp, then the schedule: one factor per epoch
            factor = partial(warmed_up_factor, cfg.schedule, cfg.milestones, cfg.gamma, cfg.warmup_epochs)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, partial(factor, self.train_epochs))
        elif cfg.schedule == "multistep":
            self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, cfg.milestones, cfg.gamma)
        elif cfg.schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.train_epochs)
        else:
            self.scheduler = None

    def _end_step(self) -> None:
        if self.memory is not None:  # first, so that every component's after_training sees the new exemplars
            self.step_record.update(
                self.memory.update(self.experience_data, self.new_classes, self.n_seen, self.extract_features)
            )
        self._uncorrected_scores = None
        if self.weight_corrector is not None and self.n_old > 0 and self._test_experiences:
            self._uncorrected_scores = self.evaluate(self._test_experiences).scores  # before it changes the model
        for component in self.components:
            component.after_training(self.view)
        trigger_plugins(self, "after_training_exp")
        self.step_record["final_epoch_loss"] = dict(self.loss_parts)
        self.step_record["seconds_per_epoch"] = round(sum(self._epoch_seconds) / max(1, len(self._epoch_seconds)), 2)
        self.previous_model = self.frozen_copy()
        trigger_plugins(self, "after_training")
        self.experience, self.adapted_dataset, self.dataloader = None, None, []  # as Avalanche leaves them
        self.mbatch, self.mb_output, self.loss = None, None, torch.zeros(1, device=self.device)

    def frozen_copy(self) -> IncrementalNet:
        """A frozen copy of the model in evaluation mode, prepared as the model is (layout, compilation)."""
        copied = copy.deepcopy(self.model).eval()
        copied.requires_grad_(False)
        return self.runtime.prepare_copy(copied)

    # ================================================================ one epoch

    def epoch_positions(self) -> torch.Tensor:
        """Positions in ``train_set`` for one epoch: the batch sampler's, else a fresh random permutation."""
        if self.batch_sampler is not None:
            return self.batch_sampler.epoch_positions(self.view)
        return torch.randperm(len(self._train_set), generator=self._order_generator)

    def _epoch_batches(self) -> int:
        n = self.batch_sampler.epoch_length(self.view) if self.batch_sampler is not None else len(self._train_set)
        return math.ceil(n / self.batch_size)

    def _begin_epoch(self) -> None:
        self._epoch_losses = EpochLosses()
        self._epoch_images = 0
        self._epoch_lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this epoch trains with
        self.train_class_counts  # noqa: B018 - counted here, before the first batch, for the losses that use it
        self._epoch_start = time.perf_counter()
        self._bar = progress_bar(
            total=self._epoch_batches(),
            leave=False,
            dynamic_ncols=True,
            desc=f"step {self.step} epoch {self.epoch + 1}/{self.train_epochs}",
            disable=not (self.progress and bars_visible()),
        )
        for component in self.components:
            component.before_epoch(self.view)
        trigger_plugins(self, "before_training_epoch")

    def training_epoch(self) -> None:
        """One epoch of the step: the epoch's order, then for every mini-batch the components' ``before_batch``,
        the forward pass, the loss (weighted L_c + every component's terms), the backward pass (or a
        component's gradient combiner), the update, and ``after_batch``; Avalanche's callbacks at their places."""
        task = torch.zeros(self.batch_size, dtype=torch.long, device=self.device)  # Avalanche's task labels: one
        for x, y in self.training_batches(self._train_set, self.batch_size, order=self.epoch_positions()):
            if self._stop_training:
                break
            self._iteration += 1
            self._set_batch(Batch(x, y), task)
            trigger_plugins(self, "before_training_iteration")
            self.optimizer.zero_grad()
            for component in self.components:
                self._set_batch(component.before_batch(self.view, self._current_batch()), task)
            batch = self._current_batch()
            trigger_plugins(self, "before_forward")
            with self.runtime.autocast():
                output = self.model(batch.x)
            self.mb_output = output.logits  # what Avalanche's metrics read: the output tensor
            for component in self.components:
                component.after_forward(self.view, output)
            trigger_plugins(self, "after_forward")
            with self.runtime.autocast():
                self.loss, parts = self.training_loss(output, batch.y, record=True)
            self.batch_loss_parts = parts
            self._epoch_losses.add(parts)
            trigger_plugins(self, "before_backward")
            if self.gradient_combiner is not None:
                self.gradient_combiner.backward(self.view, output, batch.y, parts)
            else:
                self.loss_scaler.backward(self.loss, retain_graph=self.retain_graph)
            trigger_plugins(self, "after_backward")
            trigger_plugins(self, "before_update")
            self.optimizer_step()
            trigger_plugins(self, "after_update")
            for component in self.components:
                component.after_batch(self.view)
            trigger_plugins(self, "after_training_iteration")
            self.batch_index += 1
            self._epoch_images += len(batch.y)
            if self._bar is not None:
                self._bar.update(1)
                if self._epoch_losses.batches % 10 == 0 and not self._bar.disable:  # a read every 10 batches
                    self._bar.set_postfix(loss=f"{self._epoch_losses.total_mean():.3f}")

    def _set_batch(self, batch: Batch, task: torch.Tensor) -> None:
        """The current mini-batch, for the engine and as Avalanche's ``mbatch`` (x, y, task labels)."""
        self._batch = batch
        labels = task[: len(batch.y)] if len(batch.y) <= len(task) else torch.zeros_like(batch.y)
        self.mbatch = [batch.x, batch.y, labels]

    def _current_batch(self) -> Batch:
        assert self._batch is not None
        return self._batch

    def optimizer_step(self) -> None:
        self.average_gradients(self.optimizer)
        self.loss_scaler.step(self.optimizer, clamp=self.optim_config.grad_clamp)

    def average_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Across ranks, before any step (still scaled, so every rank unscales, clamps and skips alike)."""
        if self.world.active:
            self.world.average_([p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None])

    def synchronize_buffers(self) -> None:
        """Data-parallel runs: BatchNorm's running statistics (estimated on each rank's chunk) from rank 0."""
        if self.world.active:
            self.world.broadcast_(list(self.model.buffers()))

    def _end_epoch(self) -> None:
        if self.scheduler is not None:
            self.scheduler.step()
        if self._bar is not None:
            self._bar.close()
        if self.world.active:  # the same numbers on every rank: logged by rank 0, checked by all
            self.world.average_(list(self._epoch_losses.sums.values()))
            self.synchronize_buffers()
        self.loss_parts = self._epoch_losses.means()
        for part, value in self.loss_parts.items():
            if not math.isfinite(value):  # the first epoch whose loss is NaN or infinite ends the run
                raise TrainingDiverged(self.step, len(self._epoch_seconds) + 1, part, value)
        self.epoch_scalars = {k: float(v) for k, v in self.epoch_scalars.items()}
        seconds = time.perf_counter() - self._epoch_start
        self._epoch_seconds.append(seconds)
        self.epochs_done += 1
        if self.progress and not bars_visible():  # no bar off a terminal or notebook: one line per epoch
            self.log(
                f"step {self.step} epoch {len(self._epoch_seconds)}/{self.train_epochs}: loss "
                f"{sum(self.loss_parts.values()):.4f}, {self._epoch_images / max(seconds, 1e-9):,.0f} images/s, "
                f"{time.perf_counter() - self._step_start:.1f}s into the step"
            )
        for component in self.components:
            component.after_epoch(self.view)
        trigger_plugins(self, "after_training_epoch")
        if self.on_epoch is not None:
            self.on_epoch(
                EpochResult(
                    self.step,
                    self.epochs_done,
                    dict(self.loss_parts),
                    self._epoch_lr,
                    {k: float(v) for k, v in self.epoch_scalars.items()},
                )
            )

    # ================================================================ checkpoints

    def _component_states(self) -> dict[str, CilPlugin]:
        """Components by class name (numbered when a class occurs twice), the keys of their saved states."""
        named: dict[str, CilPlugin] = {}
        for component in self.components:
            name = type(component).__name__
            named[name if name not in named else f"{name}#{sum(k.startswith(name) for k in named)}"] = component
        return named

    STATE = Mapping(
        required=("step", "head_groups", "model", "plugins", "rng", "epochs_done"),
        fields={
            "step": INT,
            "head_groups": ListOf(INT),
            "model": SECTION,
            "plugins": SECTION,
            "memory": OneOf((SECTION, NULL)),
            "rng": SECTION,
            "epochs_done": INT,
            "loss_scaler": SECTION,
        },
        what="the engine's state",
    )
    """The shape of ``checkpoint_state()`` a resumed run checks before ``restore_state`` (``memory`` and
    ``loss_scaler`` are absent from older checkpoints)."""

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything the steps after the current one depend on; call after a completed step."""
        head = self.model.head
        return {
            "step": self.step,
            "head_groups": [head.group_size(g) for g in head.groups],
            "model": self.model.state_dict(),
            "plugins": {key: c.state_dict() for key, c in self._component_states().items()},
            "memory": self.memory.state_dict() if self.memory is not None else None,
            "rng": capture_rng(self._order_generator, self._augment_generator),
            "epochs_done": self.epochs_done,
            "loss_scaler": self.loss_scaler.state_dict(),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        """Continue after the step saved in ``state`` (a fresh strategy built from the same config)."""
        components = self._component_states()
        saved = dict(state["plugins"])
        memory_state = state["memory"] if "memory" in state else saved.pop("RehearsalPlugin", None)
        # (checkpoints written before the engine owned the memory keep it among the plugins)
        if (memory_state is None) != (self.memory is None):
            raise ValueError(
                "the checkpoint was saved "
                + ("with" if memory_state is not None else "without")
                + " a rehearsal memory, this strategy has "
                + ("one" if self.memory else "none")
            )
        if set(components) != set(saved):
            raise ValueError(
                f"the checkpoint was saved by plugins {sorted(saved)}, this strategy has {sorted(components)}"
            )
        for size in state["head_groups"]:
            self.model.head.add_classes(size)
        self.model.load_state_dict(state["model"])
        self.model.to(self.device)
        self.step = state["step"]
        self.n_seen = self.model.n_classes
        self.previous_model = self.frozen_copy()
        self.loss_scaler.load_state_dict(state.get("loss_scaler", {}))
        if self.memory is not None:  # before the components, which may read the exemplars
            self.memory.load_state_dict(memory_state)
        for key, component in components.items():
            component.load_state_dict(saved[key], self.view)
        self.epochs_done = state["epochs_done"]
        restore_rng(state["rng"], self._order_generator, self._augment_generator)

    # ================================================================ evaluation

    def _test_batches(self, experience: Any) -> Iterator[list[torch.Tensor]]:
        """Avalanche mini-batches [x, y, task labels] of ``experience``'s test images (this rank's chunk)."""
        idx, labels = self.plan.step_samples(experience.current_experience, self.test_data.targets)
        idx_t = self.world.chunk(torch.from_numpy(idx))
        lab_t = self.world.chunk(torch.from_numpy(labels).to(self.device))
        images = self.test_data.batches(idx_t, self.eval_mb_size, train=False, device=self.device)
        task = torch.zeros(min(self.eval_mb_size, len(lab_t)), dtype=torch.long, device=self.device)
        for x, y in zip(images, lab_t.split(self.eval_mb_size)):
            yield [self.runtime.input(x), y, task[: len(y)]]

    def _score(self, experience: Any) -> None:
        """Scores of one test experience: the model's logits, or a component's ``evaluation_scores``; Avalanche's
        eval callbacks around it, as its own ``eval`` fires them."""
        trigger_plugins(self, "before_eval_dataset_adaptation")
        self.eval_dataset_adaptation()  # Avalanche's adapted_dataset, for Avalanche plugins
        trigger_plugins(self, "after_eval_dataset_adaptation")
        self.dataloader = self._test_batches(experience)
        trigger_plugins(self, "before_eval_exp")
        for mbatch in self.dataloader:
            self.mbatch = mbatch
            trigger_plugins(self, "before_eval_iteration")
            trigger_plugins(self, "before_eval_forward")
            with self.runtime.autocast():
                output = self.model(self.mb_x)
            if self.scorer is not None:
                self._eval_logits.append(output.logits.float())
                output = output._replace(logits=self.scorer.evaluation_scores(self.view, output))
            self.mb_output = output.logits  # the scores predictions are made from, for Avalanche's metrics
            trigger_plugins(self, "after_eval_forward")
            self._eval_scores.append(self.mb_output.float())  # on the device until the end
            self._eval_targets.append(self.mb_y)
            trigger_plugins(self, "after_eval_iteration")
        trigger_plugins(self, "after_eval_exp")

    def _eval_loop(self, experiences: list[Any]) -> None:
        """Every experience scored with the model in evaluation mode; the training state (the experience, every
        module's mode) as it was afterwards, so that a step may evaluate in the middle of its end."""
        saved = (self.experience, self.is_training, self.adapted_dataset, self.dataloader)
        modes = {name: module.training for name, module in self.model.named_modules()}
        self.is_training = False
        self.model.eval()
        self.current_eval_stream = experiences
        trigger_plugins(self, "before_eval")
        for self.experience in experiences:
            self._score(self.experience)
        trigger_plugins(self, "after_eval")
        self.current_eval_stream = []
        self.mbatch, self.mb_output, self.loss = None, None, torch.zeros(1, device=self.device)
        self.experience, self.is_training, self.adapted_dataset, self.dataloader = saved
        for name, module in self.model.named_modules():
            module.train(modes.get(name, True))

    def evaluate(self, experiences: list[Any]) -> Evaluation:
        """Scores [N, n_seen] and labels of the test images of ``experiences`` (all seen classes), and the
        classifier's own logits when the scores come from elsewhere."""
        self._eval_scores, self._eval_targets, self._eval_logits = [], [], []
        self.synchronize_buffers()  # after whatever a component re-estimated at the end of the step
        with self.runtime.inference():
            self._eval_loop(experiences)
            scores = self.world.gather_rows(torch.cat(self._eval_scores)).cpu()  # each rank scored its chunk
            targets = self.world.gather_rows(torch.cat(self._eval_targets)).cpu()
            logits = self.world.gather_rows(torch.cat(self._eval_logits)).cpu() if self._eval_logits else scores
        self._eval_scores, self._eval_targets, self._eval_logits = [], [], []
        adjusted = scores
        for component in self.hooks.all("adjust_scores"):
            adjusted = component.adjust_scores(self.view, adjusted)
        if self._uncorrected_scores is not None:  # the model before a weight-changing correction: both reported
            uncorrected, self._uncorrected_scores = self._uncorrected_scores, None
            return Evaluation(adjusted.numpy(), targets.numpy(), uncorrected)
        # a bias correction of the classifier's predictions (not a classifier of its own, such as NCM): both reported
        corrected = bool(self.hooks.all("adjust_scores")) or hasattr(self.scorer, "posthoc_correction")
        return Evaluation(adjusted.numpy(), targets.numpy(), logits.numpy() if corrected else None)


def run_steps(
    strategy: TrainingEngine,
    train_stream: Any,
    test_stream: Any,
    on_step: Callable[[int, Evaluation, float, int], None],
    first_step: int = 0,
) -> None:
    """Train on every experience from ``first_step`` on, evaluate on all seen classes, report each step.

    ``on_step(step, evaluation, train_seconds, n_train)`` receives every step's evaluation.
    """
    test_experiences = list(test_stream)
    for step, experience in enumerate(train_stream):
        if step < first_step:
            continue
        evaluation, train_seconds = strategy.run_step(experience, test_experiences[: step + 1])
        on_step(step, evaluation, train_seconds, len(strategy.train_set))
