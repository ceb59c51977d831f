"""After every step: its metrics and confusion matrix into the run directory, a checkpoint, the
loggers, a log line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cil.data.scenarios import ScenarioPlan
from cil.runs.checkpoint import save_checkpoint
from cil.runs.metrics import classifier_metrics, confusion_matrix, step_metrics
from cil.runs.results import RunWriter

if TYPE_CHECKING:
    from cil.training.engine import Evaluation


class StepReporter:
    """After every step: its metrics and confusion matrix into the run directory, a checkpoint, a log line."""

    def __init__(
        self,
        out: Path,
        plan: ScenarioPlan,
        strategy,
        writer: RunWriter,
        loggers,
        log: Callable[[str], None],
        shots: dict[str, list[int]] | None = None,
    ):
        self.out, self.plan, self.strategy, self.writer = out, plan, strategy, writer
        self.loggers, self.log = loggers, log
        self.shots = shots
        """Labels of the many-, medium- and few-shot classes (cil/runs/metrics.py: ``shot_groups``)."""

    def __call__(self, step: int, evaluation: Evaluation, train_seconds: float, n_train: int) -> None:
        plan, writer = self.plan, self.writer
        scores, targets = evaluation.scores, evaluation.targets
        metrics = step_metrics(scores, targets, plan.step_classes, step, self.shots)
        if evaluation.classifier_scores is not None:  # predictions corrected: the classifier's own accuracy too
            metrics.update(classifier_metrics(evaluation.classifier_scores, targets, plan.step_classes, step))
        record = {
            "step": step,
            "classes": [plan.order[c] for c in plan.step_classes[step]],
            "labels": plan.step_classes[step],
            "n_train": n_train,
            **metrics,
            "train_seconds": round(train_seconds, 2),
            **self.strategy.step_record,
        }
        writer.add_step(record, confusion_matrix(scores.argmax(1), targets, plan.n_seen(step)))
        check_ranks_agree(self.strategy, step)
        if writer.write:
            save_checkpoint(
                self.out,
                {
                    "state": self.strategy.checkpoint_state(),
                    "results": writer.results,
                    "config": writer.results["config"],
                },
            )
        self.loggers.log_step(record, writer.results)
        old = "" if metrics["accuracy_old"] is None else f" old {metrics['accuracy_old']:.2f} /"
        self.log(
            f"step {step}/{plan.n_steps - 1}: {plan.n_seen(step)} classes, {n_train} train images | "
            f"acc {metrics['accuracy']:.2f} (base {metrics['accuracy_base']:.2f} /{old} new "
            f"{metrics['accuracy_new']:.2f}) top5 {metrics['top5']:.2f} | {train_seconds:.1f}s"
        )


def check_ranks_agree(strategy, step: int) -> None:
    """Data-parallel runs: every rank must hold the same parameters and exemplars after every step."""
    if not strategy.world.active:
        return
    with torch.no_grad():
        checksum = sum(float(p.double().sum()) for p in strategy.model.state_dict().values() if p.is_floating_point())
    memory = strategy.memory_set
    checksum += float(memory.indices.double().sum()) + 1e6 * len(memory)
    if not strategy.world.same_everywhere(checksum):
        raise RuntimeError(f"the ranks of this data-parallel run disagree after step {step} (model or memory)")
