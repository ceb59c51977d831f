"""The plugin contract of cil/training/contract.py: hooks found by name, 'at most one' enforced, memory owned by the engine."""

import pytest
import torch

from cil.errors import UserError
from cil.training.contract import HOOKS, CilPlugin, PluginHooks
from cil.runs.run import run
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
    assert set(HOOKS) == {"adjust_logits", "adjust_scores", "param_groups", "epoch_positions", "backward",
                          "evaluation_name", "evaluation_scores", "posthoc_correction"}
    assert all(h.members[0] == name for name, h in HOOKS.items())
    hooks = PluginHooks([Namer(), Sampler(), CilPlugin()])
    assert type(hooks.one("evaluation_name")) is Namer and type(hooks.one("epoch_positions")) is Sampler
    assert hooks.one("backward") is None and hooks.all("param_groups") == []


@pytest.mark.parametrize("plugins, message", [
    ([Namer(), Namer()], "plugins Namer and Namer both decide how predictions are made"),
    ([Sampler(), Sampler()], "both choose the mini-batches"),
    ([HalfSampler()], "plugin HalfSampler has epoch_positions but not epoch_length"),
])
def test_hooks_at_most_one_plugin_may_have(plugins, message):
    with pytest.raises(UserError, match=message):
        PluginHooks(plugins)


def test_two_evaluation_plugins_are_one_clear_error(tmp_path, capsys):
    from cil.cli import main

    code = main(["run", "--scenario", "synthetic-b6-2", "--strategy", "ncm", "--plugin", "nme",
                 "--limit-per-class", "4", "--memory", "2", *TINY, "--out", str(tmp_path / "r")])
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

    args = build_parser().parse_args(["run", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline",
                                      "--limit-per-class", "4", "--memory", "2", *TINY])
    cfg = run_config_from_args(args)
    probe = SeesMemory()
    run(cfg, out=tmp_path / "r", extra_plugins=[probe], log=lambda line: None)
    assert probe.seen == [list(range(6)), list(range(8)), list(range(10))]  # every seen class, new ones included


def test_memory_set_is_read_only(tmp_path, capsys):
    results, out, _ = cli_run(tmp_path, capsys, "--scenario", "synthetic-b6-2", "--strategy", "il-baseline",
                              "--limit-per-class", "4", "--memory", "2", *TINY)
    from cil.training.engine import IncrementalStrategy

    assert isinstance(IncrementalStrategy.memory_set, property) and IncrementalStrategy.memory_set.fset is None
    assert [s["memory_size"] for s in results["steps"]] == [12, 16, 20]
