"""The plugin contract (cil/training/contract.py): the Engine protocol enforced, hooks found by name, 'at most one'
enforced, the memory owned by the engine."""

import pytest
import torch

from cil.errors import UserError
from cil.runs.assemble import build_config
from cil.runs.run import run
from cil.training.contract import HOOKS, WRITABLE_MEMBERS, CilPlugin, PluginHooks, engine_members
from tests.helpers import StopBeforeStep, tiny_sets
from tests.test_end_to_end import TINY, cli_run


class Namer(CilPlugin):
    evaluation_name = "mine"


class Sampler(CilPlugin):
    def epoch_positions(self, strategy):
        return torch.arange(len(strategy.train_set))

    def epoch_length(self, strategy):
        return len(strategy.train_set)


class HalfSampler(CilPlugin):
    def epoch_positions(self, strategy):  # no epoch_length
        return torch.arange(len(strategy.train_set))


def test_every_hook_is_declared_with_a_protocol():
    assert set(HOOKS) == {
        "adjust_logits",
        "adjust_scores",
        "param_groups",
        "epoch_positions",
        "backward",
        "evaluation_name",
        "evaluation_scores",
        "posthoc_correction",
        "adjust_previous_output",
        "loss_class_weights",
    }
    assert all(h.members[0] == name for name, h in HOOKS.items())
    hooks = PluginHooks([Namer(), Sampler(), CilPlugin()])
    assert type(hooks.one("evaluation_name")) is Namer and type(hooks.one("epoch_positions")) is Sampler
    assert hooks.one("backward") is None and hooks.all("param_groups") == []


@pytest.mark.parametrize(
    "plugins, message",
    [
        ([Namer(), Namer()], "plugins Namer and Namer both decide how predictions are made"),
        ([Sampler(), Sampler()], "both choose the mini-batches"),
        ([HalfSampler()], "plugin HalfSampler has epoch_positions but not epoch_length"),
    ],
)
def test_hooks_at_most_one_plugin_may_have(plugins, message):
    with pytest.raises(UserError, match=message):
        PluginHooks(plugins)


def test_two_evaluation_plugins_are_one_clear_error(tmp_path, capsys):
    from cil.cli import main

    code = main(
        [
            "run",
            "--scenario",
            "synthetic-b6-2",
            "--strategy",
            "ncm",
            "--plugin",
            "nme",
            "--limit-per-class",
            "4",
            "--memory",
            "2",
            *TINY,
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cil: error: plugins ncm and nme both decide how predictions are made; use one of them"]
    assert not (tmp_path / "r").exists()  # refused before any data loaded or folder was made


class SeesMemory(CilPlugin):
    """Records what memory_set holds when its after_training_exp runs."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def after_training(self, engine):
        self.seen.append(sorted(set(engine.memory_set.labels.tolist())))


def test_memory_is_updated_before_any_plugin_sees_the_step_end(tmp_path):
    from cil.cli.commands import run_config_from_args
    from cil.cli.parser import build_parser

    args = build_parser().parse_args(
        [
            "run",
            "--scenario",
            "synthetic-b6-2",
            "--strategy",
            "il-baseline",
            "--limit-per-class",
            "4",
            "--memory",
            "2",
            *TINY,
        ]
    )
    cfg = run_config_from_args(args)
    probe = SeesMemory()
    run(cfg, out=tmp_path / "r", extra_plugins=[probe], log=lambda line: None)
    assert probe.seen == [list(range(6)), list(range(8)), list(range(10))]  # every seen class, new ones included


class Vandal(CilPlugin):
    """Tries to change the exemplars in place and to replace the training set."""

    def after_training(self, engine):
        exemplars = engine.memory_set
        exemplars.indices[:] = -1
        exemplars.labels[:] = 0
        with pytest.raises(AttributeError):
            engine.train_set = exemplars  # a read-only property: hold_out, withhold and train_on change it


def test_the_memory_cannot_be_changed_from_outside(tmp_path):
    cfg = build_config(
        "synthetic-b4-2", "il-baseline", {**SMALL_FLAGS, "memory": {"per_class": 2, "budget": None}}, SMALL_SETS
    )
    results = run(cfg, out=tmp_path / "r", extra_plugins=[Vandal()], log=lambda line: None)
    from cil.runs.checkpoint import load_checkpoint

    exemplars = load_checkpoint(tmp_path / "r")["state"]["memory"]["memory"]["exemplars"]
    assert all(i >= 0 for indices in exemplars.values() for i in indices)
    assert sorted(int(c) for c in exemplars) == list(range(6)) and results["steps"][-1]["memory_size"] == 12


class OldStyle(CilPlugin):
    def after_training_exp(self, strategy, **kwargs):  # an Avalanche callback: cil components never receive it
        pass


def test_a_component_with_an_avalanche_callback_is_refused_with_the_hook_it_means():
    with pytest.raises(UserError, match="defines the Avalanche callback 'after_training_exp'.*after_training"):
        PluginHooks([OldStyle()])


# ------------------------------------------------------------------ the contract, enforced

SMALL_FLAGS = {"epochs": 1, "progress": False, "logging": {"loggers": []}, "data": {"limit_per_class": 8}}
SMALL_SETS = [
    "model.backbone=tiny",
    "optim.batch_size=8",
    "data.synthetic_classes=6",
    "data.test_limit_per_class=2",
    "runtime.channels_last=false",
]
"""(PyTorch 2.14 on the CPU crashes in the backward pass of an 8-channel strided 1x1 convolution in channels-last
layout with an odd batch: the tiny backbone with LUCIR's type-B shortcuts has one.)"""


class StrictEngine:
    """The engine behind the ``Engine`` protocol only: reading any other member, or assigning any member but
    the per-step settings, fails."""

    def __init__(self, engine):
        object.__setattr__(self, "_engine", engine)

    def __getattr__(self, name):
        if name not in engine_members():
            raise AssertionError(f"a component read engine.{name}, which is not in the Engine protocol")
        return getattr(object.__getattribute__(self, "_engine"), name)

    def __setattr__(self, name, value):
        if name not in WRITABLE_MEMBERS:
            raise AssertionError(f"a component assigned engine.{name}; it may assign only {sorted(WRITABLE_MEMBERS)}")
        setattr(object.__getattribute__(self, "_engine"), name, value)


def _strict_cases():
    from cil.config import available_strategies

    cases = [(name, []) for name in available_strategies()]
    cases += [
        ("il-baseline", ["--plugin", "nme"]),
        ("lucir-bsce", ["--plugin", "balanced-finetuning"]),
        ("il-baseline-gala", ["--set", "plugins.gala.rebalance=true", "--set", "plugins.gala.warmup_batches=1"]),
        ("il-baseline-gbg", ["--set", "plugins.gbg.grouping=ncut", "--set", "plugins.gbg.groups=2"]),
        ("lucir", ["--plugin", "lws", "--set", "plugins.lws.epochs=1", "--imbalance", "exp:4"]),
        ("il-baseline-mfw", ["--plugin", "drw", "--imbalance", "exp:4:shuffled"]),
    ]
    return cases


@pytest.mark.parametrize("strategy, extra", _strict_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_named_strategy_uses_only_the_engine_protocol(tmp_path, monkeypatch, strategy, extra):
    """Every component of every named strategy is given the engine behind a strict proxy: a member outside the
    Engine protocol fails the run (checkpoints resume through the proxy too)."""
    from cil.cli.commands import run_flags
    from cil.cli.parser import build_parser
    from cil.training.engine import TrainingEngine

    monkeypatch.setattr(TrainingEngine, "view", property(lambda engine: StrictEngine(engine)))
    args = build_parser().parse_args(["run", "--scenario", "synthetic-b4-2", "--strategy", strategy, *extra])
    flags = {**run_flags(args), **SMALL_FLAGS}
    if "memory" not in flags and strategy not in ("finetune", "ncm", "slda") and "relaxed" not in strategy:
        flags["memory"] = {"per_class": 3, "budget": None}
    # the separated softmax cannot learn a class alone in its step (refused): two classes per step for it
    steps = ["data.synthetic_classes=8"] if strategy in ("ss-il", "il-baseline-separated-softmax") else []
    cfg = build_config("synthetic-b4-2", strategy, flags, [*SMALL_SETS, *steps, *tiny_sets(strategy), *args.sets])
    with pytest.raises(KeyboardInterrupt):  # stopped before the last step, then resumed: the components'
        run(cfg, out=tmp_path / "r", extra_plugins=[StopBeforeStep(2)], log=lambda line: None)
    results = run(cfg, out=tmp_path / "r", resume=True, log=lambda line: None)  # states restored through it too
    assert results["status"] == "complete" and len(results["steps"]) == 3


class ReadsTheOptimizer(CilPlugin):
    def before_step(self, engine):
        engine.optimizer  # noqa: B018 - an engine internal


class SetsTheStep(CilPlugin):
    def before_step(self, engine):
        engine.n_old = 0


@pytest.mark.parametrize(
    "probe, message", [(ReadsTheOptimizer(), "read engine.optimizer"), (SetsTheStep(), "assigned engine.n_old")]
)
def test_the_strict_proxy_catches_what_is_outside_the_protocol(tmp_path, monkeypatch, probe, message):
    from cil.training.engine import TrainingEngine

    monkeypatch.setattr(TrainingEngine, "view", property(lambda engine: StrictEngine(engine)))
    cfg = build_config("synthetic-b4-2", "il-baseline", SMALL_FLAGS, SMALL_SETS)
    with pytest.raises(AssertionError, match=message):
        run(cfg, out=tmp_path / "r", extra_plugins=[probe], log=lambda line: None)


def test_no_strategy_module_reaches_past_the_engine_protocol():
    """Read, not run: every ``engine.X`` in strategies/ names a member of the Engine protocol, and no module reads
    Avalanche's mini-batch state (``mb_x``, ``mb_y``, ``mb_output``, ``mbatch``) or the engine's internals."""
    import ast
    from pathlib import Path

    members = engine_members()
    found = []
    for path in sorted((Path(__file__).parent.parent / "strategies").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                if node.attr.startswith("mb_") or node.attr == "mbatch":
                    found.append(f"{path.name}:{node.lineno} .{node.attr}")
                if (
                    isinstance(node.value, ast.Name)
                    and node.value.id in ("engine", "strategy")
                    and node.attr not in members
                ):
                    found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
            if isinstance(node, ast.arg) and node.arg == "strategy":
                found.append(f"{path.name}:{node.lineno} a parameter named 'strategy' (hooks take 'engine')")
    assert found == []


def test_memory_set_is_read_only(tmp_path, capsys):
    results, out, _ = cli_run(
        tmp_path,
        capsys,
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        "il-baseline",
        "--limit-per-class",
        "4",
        "--memory",
        "2",
        *TINY,
    )
    from cil.training.engine import TrainingEngine

    assert isinstance(TrainingEngine.memory_set, property) and TrainingEngine.memory_set.fset is None
    assert [s["memory_size"] for s in results["steps"]] == [12, 16, 20]


def test_the_docs_engine_table_names_every_member_of_the_protocol():
    """docs/strategies.md's `Engine` table is what plugin writers read: a member added to the protocol and not
    to the table fails here, and so does a name the table keeps after the protocol dropped it."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "strategies.md").read_text()
    table = doc[doc.index("The `Engine` protocol:") :].split("\n\n")[1]
    first_column = [row.split("|")[1] for row in table.splitlines()[2:]]
    documented = {name for cell in first_column for name in re.findall(r"`([a-z_]+)", cell)}
    assert documented == set(engine_members())
