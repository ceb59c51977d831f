"""A user-defined loss, registered from outside cil, runs by name with typed keys."""

import json
import textwrap

from cil import registry
from cil.cli import main

MODULE = textwrap.dedent('''
    from dataclasses import dataclass

    import torch.nn.functional as F

    from cil.config import ComponentConfig
    from cil.plugin import ClassificationLoss
    from cil.registry import register

    CALLS = []


    @dataclass
    class ScaledCEConfig(ComponentConfig):
        name: str = "scaled-ce"
        scale: float = 1.0


    @register("loss", "scaled-ce", ScaledCEConfig, "cross-entropy times a constant (a test plugin)")
    class ScaledCE(ClassificationLoss):
        def classification_loss(self, strategy, logits, targets):
            CALLS.append(self.config.scale)
            return self.config.scale * F.cross_entropy(logits, targets)
''')


def test_user_loss_from_cil_plugins(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_cil_plugins.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CIL_PLUGINS", "my_cil_plugins")
    monkeypatch.setattr(registry, "_loaded", False)
    strategy = tmp_path / "mine.yaml"
    strategy.write_text("extends: il-baseline\nloss:\n  name: scaled-ce\n  scale: 0.5\n")
    common = ["run", "--scenario", "synthetic-b6-2", "--strategy", str(strategy), "--epochs", "1", "--no-progress",
              "--limit-per-class", "4", "--set", "model.backbone=tiny", "--set", "optim.batch_size=8",
              "--set", "data.synthetic_classes=10", "--set", "data.test_limit_per_class=2"]

    assert main([*common, "--set", "loss.scael=2"]) == 2
    assert "unknown key 'loss.scael' (did you mean 'scale'?)" in capsys.readouterr().err

    assert main([*common, "--out", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["loss"] == {"name": "scaled-ce", "scale": 0.5}
    import my_cil_plugins

    assert my_cil_plugins.CALLS and set(my_cil_plugins.CALLS) == {0.5}
