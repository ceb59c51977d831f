"""The incremental loop on Avalanche's ``SupervisedTemplate``.

For every step t of the scenario::

    adapt the head to the N_t classes seen so far
    train for E epochs on the step's data (+ whatever plugins add, e.g. exemplars)
    after_training_exp plugins (memory update, balanced finetuning, ...)
    keep a frozen copy of the model as the previous model
    evaluate on the test images of all seen classes, write the step's results

What the engine offers plugins (and knows of none of them):

* ``step``, ``n_old`` (N_{t-1}), ``n_seen`` (N_t), ``new_classes``: the step's bookkeeping;
* ``experience_data``: the step's new data; ``train_set``: what training iterates over, which
  plugins may extend (``extend_training_set``) after dataset adaptation;
* ``train_class_counts``: n_i of every seen class in ``train_set`` (Jodelet et al., Eq. 3);
* ``memory_set``: the exemplars (read-only; empty without a memory). The engine owns the rehearsal
  memory (cil/training/memory.py): it adds the exemplars to every step's training set and updates them after
  the step's training, before any plugin's ``after_training_exp``;
* ``previous_model`` and ``previous_output()``: the frozen model of step t-1 and its output on
  the current mini-batch (computed once per iteration, whoever asks);
* ``classification_weight``: the factor of L_c in the total loss (IL-Baseline sets 1 - rho);
* ``extract_features(indices)``: embeddings with the evaluation transform (herding, NME), computed
  in large batches without autograd (``runtime.inference()``) and in the run's precision;
* ``runtime``: the run's device settings (cil/training/runtime.py): ``runtime.autocast()`` for a plugin's own
  forward passes, ``loss_scaler`` for gradients a plugin computes itself (``loss_scaler.scale``);
* ``step_record``: a dict that ends up in the step's results (memory size, learned values);
* ``train_epochs``: this step's number of epochs, reset from the config at every step (a plugin
  may set it in ``before_training_exp``, e.g. 0 to keep a frozen model);
* ``training_on(training_set)``: trains on another set for a while (balanced finetuning), with
  ``train_set`` and the class counts it implies restored afterwards;
* ``extend_minibatch(x, y)`` and ``replace_logits(logits)``: a plugin's change of the current
  mini-batch (training) or of the model's scores (evaluation), instead of writing Avalanche's
  ``mbatch`` / ``mb_output`` itself;
* ``epoch_scalars``: learned values plugins keep current during a step, logged after every epoch
  (e.g. Meta BSCE's alpha); emptied at the start of each step;
* ``checkpoint_state()`` / ``restore_state()``: everything a later step depends on (model, plugin
  states, random number generators), so that a resumed run repeats an uninterrupted one.

The per-batch path (data, forward, losses, backward, update, and every plugin hook called in it)
reads no device value on the host, so a GPU never waits for Python: loss sums stay on the device
until the end of the epoch (cil/training/epoch_losses.py). docs/performance.md lists the exceptions.

The optional plugin hooks (``adjust_logits``, ``adjust_scores``, ``param_groups``,
``epoch_positions``/``epoch_length``, ``backward``, ``evaluation_name``) are declared, with their
signatures and meaning, in cil/training/contract.py; the engine asks for them through ``PluginHooks``.
"""

from __future__ import annotations

import copy
import math
import sys
import time
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate

from cil.training.random_state import capture_rng, restore_rng
from cil.config import OptimConfig, RuntimeConfig
from cil.training.distributed import SINGLE, World
from cil.training.epoch_losses import EpochLosses
from cil.errors import TrainingDiverged
from cil.training.memory import Rehearsal
from cil.training.contract import CilPlugin, ClassificationLoss, PluginHooks
from cil.training.progress import bars_visible, progress_bar
from cil.training.runtime import Runtime
from cil.data.scenarios import ScenarioPlan, experience_indices
from cil.training.training_set import TrainingSet

if TYPE_CHECKING:
    from cil.data.base import ImageData
    from cil.models import IncrementalNet, NetOutput


class _Batches:
    """Iterates ``strategy.train_set`` once per epoch as [x, y, task] mini-batches on the device."""

    def __init__(self, strategy: "IncrementalStrategy"):
        self.strategy = strategy

    def __len__(self) -> int:
        s = self.strategy
        n = s.batch_sampler.epoch_length(s) if s.batch_sampler is not None else len(s.train_set)
        return math.ceil(n / s.train_mb_size)

    def __iter__(self):
        s = self.strategy
        task = torch.zeros(s.train_mb_size, dtype=torch.long, device=s.device)  # Avalanche's task labels: one task
        for x, y in s.training_batches(s.train_set, s.train_mb_size, order=s.epoch_positions()):
            yield [x, y, task[: len(y)]]


class IncrementalStrategy(SupervisedTemplate):
    """One SGD strategy for every method; the method lives in its plugins."""

    world: World = SINGLE

    def __init__(
        self,
        *,
        model: "IncrementalNet",
        plan: ScenarioPlan,
        train_data: "ImageData",
        test_data: "ImageData",
        optim: OptimConfig,
        loss: ClassificationLoss,
        plugins: list,
        device: torch.device,
        seed: int,
        memory: Rehearsal | None = None,
        runtime: Runtime | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
        world: World = SINGLE,
    ):
        self.world = world
        """This process's rank among the run's processes (cil/training/distributed.py); SINGLE for one process."""
        runtime = runtime if runtime is not None else Runtime.resolve(RuntimeConfig(precision="fp32"), device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No loggers specified")
            super().__init__(
                model=model,
                optimizer=torch.optim.SGD(model.parameters(), lr=optim.lr),  # replaced at every step
                criterion=loss,
                train_mb_size=optim.batch_size,
                train_epochs=optim.epochs,
                eval_mb_size=runtime.eval_batch_size,
                device=device,
                plugins=plugins,
                evaluator=EvaluationPlugin(loggers=[]),
                eval_every=-1,
            )
        self.runtime = runtime
        self.loss_scaler = runtime.loss_scaler()
        """Backward pass and optimizer step (fp16: with dynamic loss scaling), kept across steps."""
        runtime.prepare(self.model.to(self.device))
        self.plan = plan
        self.train_data, self.test_data = train_data, test_data
        self.optim_config = optim
        self.progress = progress
        self.log = log if log is not None else (lambda line: print(line, file=sys.stderr))
        """Where progress lines go when stderr is not a terminal (one per epoch instead of a bar)."""
        self.order_generator = torch.Generator().manual_seed(seed)
        self.augment_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.previous_model: IncrementalNet | None = None
        self.step = -1
        self.n_old = 0
        self.n_seen = 0
        self.new_classes: list[int] = []
        self.classification_weight = 1.0
        self.experience_data = TrainingSet.empty()
        self.train_set = self.experience_data
        self.memory = memory
        """The rehearsal memory (None: exemplar-free), updated by the engine after every step's training."""
        self.hooks = PluginHooks(self.plugins)
        namer = self.hooks.one("evaluation_name")
        self.evaluation_name = namer.evaluation_name if namer is not None else "cnn"
        """How predictions are made: "cnn" (classifier argmax) unless a plugin says otherwise (e.g. "nme")."""
        self.batch_sampler = self.hooks.one("epoch_positions")
        self.gradient_combiner = self.hooks.one("backward")
        self.step_record: dict[str, Any] = {}
        self.loss_parts: dict[str, float] = {}
        """Mean of every loss term over the last epoch (read once per epoch)."""
        self.loss_terms: dict[str, torch.Tensor] = {}
        """The current mini-batch's weighted loss terms, with their graphs (what ``backward`` differentiates)."""
        self.epoch_scalars: dict[str, float | torch.Tensor] = {}
        """Values to log after every epoch; a plugin may store a 0-d tensor (read at the epoch's end)."""
        self.epochs_done = 0
        """Training epochs over all steps so far (the x axis of per-epoch logs)."""
        self._epoch_losses = EpochLosses()
        self._epoch_images = 0
        self._step_start = 0.0
        self._train_class_counts: tuple[TrainingSet, torch.Tensor] | None = None
        self._epoch_start = 0.0
        self._epoch_seconds: list[float] = []
        self._iteration = 0
        self._previous_output_cache: tuple[int, Any] | None = None
        self._eval_scores: list[torch.Tensor] = []
        self._eval_targets: list[torch.Tensor] = []
        self._bar = None

    # ---------------------------------------------------------------- step set-up

    @property
    def loss_plugin(self) -> ClassificationLoss:
        return self._criterion  # type: ignore[return-value]

    def _before_training_exp(self, **kwargs):
        self.step = self.experience.current_experience
        self.new_classes = list(self.plan.step_classes[self.step])
        self.n_old = self.plan.n_seen(self.step - 1) if self.step > 0 else 0
        self.n_seen = self.plan.n_seen(self.step)
        idx, labels = experience_indices(self.experience)
        self.experience_data = TrainingSet(torch.from_numpy(idx), torch.from_numpy(labels))
        self.classification_weight = 1.0
        self.train_epochs = self.optim_config.epochs  # plugins may change it for this step (0: no training)
        self.step_record = {}
        self.epoch_scalars = {}
        self._epoch_seconds = []
        self._step_start = time.perf_counter()
        super()._before_training_exp(**kwargs)

    def train_dataset_adaptation(self, **kwargs):
        super().train_dataset_adaptation(**kwargs)
        self.train_set = self.experience_data
        if len(self.memory_set):
            self.extend_training_set(self.memory_set.indices, self.memory_set.labels)

    @property
    def memory_set(self) -> TrainingSet:
        """The exemplars of every class seen before the current step's memory update (read-only)."""
        return self.memory.exemplars() if self.memory is not None else TrainingSet.empty()

    def extend_training_set(self, indices: torch.Tensor, labels: torch.Tensor) -> None:
        """Add samples (e.g. exemplars) to this step's training set."""
        self.train_set = self.train_set + TrainingSet(indices.long().cpu(), labels.long().cpu())

    @contextmanager
    def training_on(self, training_set: TrainingSet):
        """Make ``training_set`` the training set (and its class counts ``train_class_counts``) for a while."""
        saved, self.train_set = self.train_set, training_set
        try:
            yield training_set
        finally:
            self.train_set = saved

    def extend_minibatch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Append samples to the current training mini-batch (before the forward pass)."""
        self.mbatch = [torch.cat([self.mb_x, x]), torch.cat([self.mb_y, y]),
                       torch.cat([self.mbatch[-1], torch.zeros_like(y)])]

    def replace_logits(self, logits: torch.Tensor) -> None:
        """Replace the model's scores of the current evaluation mini-batch (e.g. nearest-mean scores)."""
        self.mb_output = self.mb_output._replace(logits=logits)

    @property
    def train_class_counts(self) -> torch.Tensor:
        """n_i: training samples of each seen class in the current training set, on the device
        (counted once per training set on the host, so asking for it per batch costs nothing)."""
        cached = self._train_class_counts
        if cached is None or cached[0] is not self.train_set or len(cached[1]) != self.n_seen:
            counts = torch.bincount(self.train_set.labels, minlength=self.n_seen).float().to(self.device)
            self._train_class_counts = cached = (self.train_set, counts)
        return cached[1]

    def make_train_dataloader(self, **kwargs):
        self.dataloader = _Batches(self)

    def epoch_positions(self) -> torch.Tensor:
        """Positions in ``train_set`` for one epoch: the batch sampler's, else a fresh random permutation."""
        if self.batch_sampler is not None:
            return self.batch_sampler.epoch_positions(self)
        return torch.randperm(len(self.train_set), generator=self.order_generator)

    def model_adaptation(self, model=None):
        model = self.model if model is None else model
        if self.is_training and model.n_classes < self.n_seen:
            model.head.add_classes(self.n_seen - model.n_classes)
        return model.to(self.device)

    def training_batches(self, training_set: TrainingSet, batch_size: int, order: torch.Tensor | None = None):
        """(x, y) augmented mini-batches of ``training_set`` in ``order`` (default: a fresh random one)."""
        if order is None:
            order = torch.randperm(len(training_set), generator=self.order_generator)
        smallest = 2 * self.world.size  # BatchNorm needs two samples in every rank's chunk
        if 0 < len(order) % batch_size < smallest and len(order) > batch_size:
            order = order[: len(order) - len(order) % batch_size]
        indices, labels = training_set.indices[order], training_set.labels[order]
        labels = labels.to(self.device)  # once per epoch, not once per batch
        sharded = {"shard": (self.world.rank, self.world.size)} if self.world.active else {}  # one process: no shard
        images = self.train_data.batches(indices, batch_size, train=True, device=self.device,
                                         generator=self.augment_generator, **sharded)
        for x, y in zip(images, labels.split(batch_size)):
            yield self.runtime.input(x), self.world.chunk(y)

    def make_optimizer(self, **kwargs):
        cfg = self.optim_config
        lr = cfg.incremental_lr if (self.step > 0 and cfg.incremental_lr is not None) else cfg.lr
        groups: list[dict] = [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        for plugin in self.hooks.all("param_groups"):
            groups = plugin.param_groups(self, groups, lr)
        self.optimizer = self.runtime.sgd(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if cfg.schedule == "multistep":
            self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, cfg.milestones, cfg.gamma)
        elif cfg.schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.train_epochs)
        else:
            self.scheduler = None

    def trainable_parameter_groups(self) -> list[dict]:
        """What this step trains and at which learning rate: the optimizer's parameter groups (built from
        every plugin's ``param_groups``), the one source of truth for the real step and for virtual ones."""
        return [{"params": list(g["params"]), "lr": g["lr"]} for g in self.optimizer.param_groups]

    def check_model_and_optimizer(self, **kwargs):
        self.model = self.model_adaptation()
        self.make_optimizer()

    # ---------------------------------------------------------------- training loop

    def forward(self) -> "NetOutput":
        with self.runtime.autocast():
            return self.model(self.mb_x)

    def training_loss(self, output: "NetOutput", targets: torch.Tensor,
                      record: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its named parts: weight * L_c + every plugin's loss terms.

        ``record`` marks the real mini-batch (plugins may keep statistics of it), as opposed to a
        re-evaluation such as Meta BSCE's virtual step.
        """
        parts = {"classification": self.classification_weight * self.classification_loss(output, targets, record)}
        parts.update(self.plugin_loss_terms(output, targets))
        return sum(parts.values()), parts  # type: ignore[return-value]

    def classification_loss(self, output: "NetOutput", targets: torch.Tensor, record: bool = False) -> torch.Tensor:
        """L_c of the loss plugin on the logits, after every plugin's ``adjust_logits``."""
        logits = output.logits
        for plugin in self.hooks.all("adjust_logits"):
            logits = plugin.adjust_logits(self, logits, targets, record)
        return self.loss_plugin.classification_loss(self, logits, targets)

    def plugin_loss_terms(self, output: "NetOutput", targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted loss terms of every plugin other than the classification loss."""
        parts: dict[str, torch.Tensor] = {}
        for plugin in self.plugins:
            if isinstance(plugin, CilPlugin) and plugin is not self.loss_plugin:
                parts.update(plugin.loss_terms(self, output, targets))
        return parts

    def criterion(self):
        if not self.is_training:
            return torch.zeros((), device=self.device)
        with self.runtime.autocast():
            total, parts = self.training_loss(self.mb_output, self.mb_y, record=True)
        self.loss_terms = parts
        self._epoch_losses.add(parts)
        return total

    def backward(self):
        if self.gradient_combiner is not None:
            self.gradient_combiner.backward(self)
        else:
            self.loss_scaler.backward(self.loss, retain_graph=self.retain_graph)

    def optimizer_step(self):
        self.average_gradients(self.optimizer)
        self.loss_scaler.step(self.optimizer, clamp=self.optim_config.grad_clamp)

    def synchronize_buffers(self) -> None:
        """Data-parallel runs: BatchNorm's running statistics (estimated on each rank's chunk) from rank 0."""
        if self.world.active:
            self.world.broadcast_(list(self.model.buffers()))

    def average_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Across ranks, before any step (still scaled, so every rank unscales, clamps and skips alike)."""
        if self.world.active:
            self.world.average_([p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None])

    def previous_output(self) -> "NetOutput":
        """The previous step's model on the current mini-batch (no gradient), computed once per iteration."""
        if self.previous_model is None:
            raise RuntimeError("there is no previous model at the base step")
        if self._previous_output_cache is None or self._previous_output_cache[0] != self._iteration:
            with torch.no_grad(), self.runtime.autocast():
                self._previous_output_cache = (self._iteration, self.previous_model(self.mb_x))
        return self._previous_output_cache[1]

    def _before_training_iteration(self, **kwargs):
        self._iteration += 1
        super()._before_training_iteration(**kwargs)

    def _before_training_epoch(self, **kwargs):
        self._epoch_losses = EpochLosses()
        self._epoch_images = 0
        self.train_class_counts  # noqa: B018 - counted here, before the first batch, for the losses that use it
        self._epoch_start = time.perf_counter()
        epoch = self.clock.train_exp_epochs + 1
        self._bar = progress_bar(total=len(self.dataloader), desc=f"step {self.step} epoch {epoch}/{self.train_epochs}",
                                 leave=False, disable=not (self.progress and bars_visible()), dynamic_ncols=True)
        super()._before_training_epoch(**kwargs)

    def _after_training_iteration(self, **kwargs):
        super()._after_training_iteration(**kwargs)
        self._epoch_images += len(self.mb_y)
        if self._bar is not None:
            self._bar.update(1)
            if self._epoch_losses.batches % 10 == 0 and not self._bar.disable:  # a read every 10 batches
                self._bar.set_postfix(loss=f"{self._epoch_losses.total_mean():.3f}")

    def _after_training_epoch(self, **kwargs):
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
            self.log(f"step {self.step} epoch {len(self._epoch_seconds)}/{self.train_epochs}: loss "
                     f"{sum(self.loss_parts.values()):.4f}, {self._epoch_images / max(seconds, 1e-9):,.0f} images/s, "
                     f"{time.perf_counter() - self._step_start:.1f}s into the step")
        super()._after_training_epoch(**kwargs)

    def _after_training_exp(self, **kwargs):
        if self.memory is not None:  # first, so that every plugin's after_training_exp sees the new exemplars
            self.step_record.update(self.memory.update(self.experience_data, self.new_classes, self.n_seen,
                                                       self.extract_features))
        super()._after_training_exp(**kwargs)
        self.step_record["final_epoch_loss"] = dict(self.loss_parts)
        self.step_record["seconds_per_epoch"] = round(sum(self._epoch_seconds) / max(1, len(self._epoch_seconds)), 2)
        self.previous_model = self.frozen_copy()

    def frozen_copy(self) -> "IncrementalNet":
        """A frozen copy of the model in evaluation mode, prepared as the model is (layout, compilation)."""
        copied = copy.deepcopy(self.model).eval()
        copied.requires_grad_(False)
        return self.runtime.prepare_copy(copied)

    # ---------------------------------------------------------------- checkpoints

    def _plugin_states(self) -> dict[str, CilPlugin]:
        """cil plugins by class name (numbered when a class occurs twice), the keys of their saved states."""
        named: dict[str, CilPlugin] = {}
        for plugin in self.plugins:
            if isinstance(plugin, CilPlugin):
                name = type(plugin).__name__
                named[name if name not in named else f"{name}#{sum(k.startswith(name) for k in named)}"] = plugin
        return named

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything the steps after the current one depend on; call after a completed step."""
        head = self.model.head
        return {
            "step": self.step,
            "head_groups": [head.group_size(g) for g in head.groups],
            "model": self.model.state_dict(),
            "plugins": {key: p.state_dict() for key, p in self._plugin_states().items()},
            "memory": self.memory.state_dict() if self.memory is not None else None,
            "rng": capture_rng(self.order_generator, self.augment_generator),
            "epochs_done": self.epochs_done,
            "loss_scaler": self.loss_scaler.state_dict(),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        """Continue after the step saved in ``state`` (a fresh strategy built from the same config)."""
        plugins = self._plugin_states()
        saved_plugins = dict(state["plugins"])
        memory_state = state["memory"] if "memory" in state else saved_plugins.pop("RehearsalPlugin", None)
        # (checkpoints written before the engine owned the memory keep it among the plugins)
        if (memory_state is None) != (self.memory is None):
            raise ValueError("the checkpoint was saved " + ("with" if memory_state is not None else "without")
                             + " a rehearsal memory, this strategy has " + ("one" if self.memory else "none"))
        if set(plugins) != set(saved_plugins):
            raise ValueError(f"the checkpoint was saved by plugins {sorted(saved_plugins)}, "
                             f"this strategy has {sorted(plugins)}")
        for size in state["head_groups"]:
            self.model.head.add_classes(size)
        self.model.load_state_dict(state["model"])
        self.model.to(self.device)
        self.step = state["step"]
        self.n_seen = self.model.n_classes
        self.previous_model = self.frozen_copy()
        self.loss_scaler.load_state_dict(state.get("loss_scaler", {}))
        if self.memory is not None:  # before the plugins, which may read the exemplars
            self.memory.load_state_dict(memory_state)
        for key, plugin in plugins.items():
            plugin.load_state_dict(saved_plugins[key], self)
        self.epochs_done = state["epochs_done"]
        restore_rng(state["rng"], self.order_generator, self.augment_generator)

    # ---------------------------------------------------------------- features and evaluation

    def extract_features(self, indices: torch.Tensor, data: "ImageData | None" = None, flip: bool = False) -> torch.Tensor:
        """Embeddings (fp32) of store samples with the evaluation transform (mirrored if ``flip``), model in
        eval mode, in evaluation-sized batches under inference mode and the run's precision."""
        data = self.train_data if data is None else data
        was_training = self.model.training
        self.model.eval()
        try:
            with self.runtime.inference(), self.runtime.autocast():
                feats = [self.model.backbone(self.runtime.input(x.flip(3) if flip else x)).features.float()
                         for x in data.batches(self.world.chunk(indices), self.eval_mb_size, train=False,
                                               device=self.device)]
                features = torch.cat(feats) if feats else torch.empty(0, self.model.backbone.out_dim,
                                                                      device=self.device)
        finally:
            self.model.train(was_training)
        return self.world.gather_rows(features.clone())  # normal tensors (inference ones cannot enter autograd)

    def make_eval_dataloader(self, **kwargs):
        idx, labels = experience_indices(self.experience)
        idx_t, lab_t = self.world.chunk(torch.from_numpy(idx)), self.world.chunk(torch.from_numpy(labels).to(self.device))

        def batches():
            images = self.test_data.batches(idx_t, self.eval_mb_size, train=False, device=self.device)
            task = torch.zeros(self.eval_mb_size, dtype=torch.long, device=self.device)
            for x, y in zip(images, lab_t.split(self.eval_mb_size)):
                yield [self.runtime.input(x), y, task[: len(y)]]

        self.dataloader = batches()

    def _after_eval_iteration(self, **kwargs):
        super()._after_eval_iteration(**kwargs)
        self._eval_scores.append(self.mb_output.logits.float())  # on the device until the end
        self._eval_targets.append(self.mb_y)

    def evaluate(self, experiences) -> tuple[np.ndarray, np.ndarray]:
        """Scores [N, n_seen] and labels of the test images of ``experiences`` (all seen classes)."""
        self._eval_scores, self._eval_targets = [], []
        self.synchronize_buffers()  # after whatever a plugin re-estimated at the end of the step (balanced finetuning)
        with self.runtime.inference():
            self.eval(experiences)
            scores = self.world.gather_rows(torch.cat(self._eval_scores)).cpu()  # each rank scored its chunk
            targets = self.world.gather_rows(torch.cat(self._eval_targets)).cpu()
        self._eval_scores, self._eval_targets = [], []
        for plugin in self.hooks.all("adjust_scores"):
            scores = plugin.adjust_scores(self, scores)
        return scores.numpy(), targets.numpy()


def run_steps(strategy: IncrementalStrategy, train_stream, test_stream, on_step, first_step: int = 0) -> None:
    """Train on every experience from ``first_step`` on, evaluate on all seen classes, report each step.

    ``on_step(step, scores, targets, train_seconds, n_train)`` receives every step's evaluation.
    """
    for step, experience in enumerate(train_stream):
        if step < first_step:
            continue
        start = time.perf_counter()
        strategy.train(experience, eval_streams=[])
        train_seconds = time.perf_counter() - start
        scores, targets = strategy.evaluate(list(test_stream)[: step + 1])
        on_step(step, scores, targets, train_seconds, len(strategy.train_set))
