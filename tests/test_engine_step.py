"""The engine owns its step (cil/training/engine.py, ``run_step``): the order of cil's hooks and Avalanche's
callbacks is the one docs/architecture.md shows, and Avalanche's own evaluation plugin, metrics and loggers
work on it."""

import io
import re
from pathlib import Path

import pytest
from avalanche.core import SupervisedPlugin

from cil.runs.assemble import build_config
from cil.runs.run import run
from cil.training.contract import CilPlugin
from tests.helpers import StopBeforeStep, quiet

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
FLAGS = {"epochs": 1, "progress": False, "logging": {"loggers": []}, "data": {"limit_per_class": 8}}
SETS = ["model.backbone=tiny", "data.synthetic_classes=6", "data.test_limit_per_class=2", "memory.per_class=2"]

AVALANCHE_CALLBACKS = [
    *(
        f"{when}_{what}"
        for what in ("training", "training_exp", "training_epoch", "training_iteration")
        for when in ("before", "after")
    ),
    *(f"{when}_{what}" for what in ("forward", "backward", "update") for when in ("before", "after")),
    *(
        f"{when}_{what}"
        for what in ("train_dataset_adaptation", "eval_dataset_adaptation")
        for when in ("before", "after")
    ),
    *(
        f"{when}_{what}"
        for what in ("eval", "eval_exp", "eval_iteration", "eval_forward")
        for when in ("before", "after")
    ),
]


def documented_order() -> list[str]:
    """The event names of docs/architecture.md's 'One step' block, in order (loop lines left out)."""
    block = DOC.read_text().split("<!-- step order -->")[1]
    return re.findall(r"\b(?:cil|avalanche):\w+", block)


def recorded_order(tmp_path) -> list[str]:
    """Every cil hook and Avalanche callback of the base step of a run with one epoch of one mini-batch and one
    evaluation mini-batch."""
    events: list[str] = []

    class CilRecorder(CilPlugin):
        def before_step(self, engine):
            events.append("cil:before_step")

        def before_epoch(self, engine):
            events.append("cil:before_epoch")

        def before_batch(self, engine, batch):
            events.append("cil:before_batch")
            return batch

        def after_forward(self, engine, output):
            events.append("cil:after_forward")

        def loss_terms(self, engine, output, targets):
            events.append("cil:loss_terms")
            return {}

        def after_batch(self, engine):
            events.append("cil:after_batch")

        def after_epoch(self, engine):
            events.append("cil:after_epoch")

        def after_training(self, engine):
            events.append("cil:after_training")

        def evaluation_scores(self, engine, output):
            events.append("cil:evaluation_scores")
            return output.logits

        def adjust_scores(self, engine, scores):
            events.append("cil:adjust_scores")
            return scores

    class AvalancheRecorder(SupervisedPlugin):
        pass

    for name in AVALANCHE_CALLBACKS:
        setattr(AvalancheRecorder, name, lambda self, strategy, _n=name, **kwargs: events.append(f"avalanche:{_n}"))
    cfg = build_config("synthetic-b4-2", "il-baseline", FLAGS, [*SETS, "optim.batch_size=64"])
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out=tmp_path / "r", extra_plugins=[CilRecorder(), AvalancheRecorder(), StopBeforeStep(1)], log=quiet)
    second = events.index("avalanche:before_training", 1)
    return events[:second]


def test_one_step_fires_hooks_and_callbacks_in_the_documented_order(tmp_path):
    assert recorded_order(tmp_path) == documented_order()


def test_avalanches_evaluation_plugin_measures_what_cil_reports(tmp_path):
    """A user's EvaluationPlugin becomes the engine's evaluator: its accuracy per step is cil's, its epoch losses
    and the clock count every epoch, and its logger writes them."""
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.logging import TextLogger
    from avalanche.training.plugins import EvaluationPlugin

    text = io.StringIO()
    evaluator = EvaluationPlugin(
        accuracy_metrics(epoch=True, stream=True), loss_metrics(epoch=True), loggers=[TextLogger(text)]
    )
    cfg = build_config("synthetic-b4-2", "il-baseline", {**FLAGS, "epochs": 2}, [*SETS, "optim.batch_size=8"])
    results = run(cfg, out=tmp_path / "r", extra_plugins=[evaluator], log=quiet)
    metrics = evaluator.get_all_metrics()
    stream = next(v for k, v in metrics.items() if k.startswith("Top1_Acc_Stream/eval_phase"))
    assert stream[1] == pytest.approx([s["accuracy"] / 100 for s in results["steps"]], abs=1e-12)
    epoch_loss = next(v for k, v in metrics.items() if k.startswith("Loss_Epoch/train_phase"))
    assert len(epoch_loss[1]) == 2 * 3 and epoch_loss[0] == sorted(epoch_loss[0])  # at the clock's iterations
    assert "Top1_Acc_Stream/eval_phase" in text.getvalue()


def test_two_evaluation_plugins_are_refused(tmp_path):
    from avalanche.training.plugins import EvaluationPlugin

    from cil.errors import UserError

    cfg = build_config("synthetic-b4-2", "il-baseline", FLAGS, SETS)
    with pytest.raises(UserError, match="at most one Avalanche EvaluationPlugin"):
        run(cfg, out=tmp_path / "r", extra_plugins=[EvaluationPlugin(), EvaluationPlugin()], log=quiet)
