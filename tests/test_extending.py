"""A user-defined loss, registered from outside cil, runs by name with typed keys."""

import json
import textwrap

from cil import registry
from cil.cli import main

MODULE = textwrap.dedent("""
    from dataclasses import dataclass

    import torch.nn.functional as F

    from cil.plugin import ClassificationLoss, ComponentConfig, register

    CALLS = []


    @dataclass
    class ScaledCEConfig(ComponentConfig):
        name: str = "scaled-ce"
        scale: float = 1.0


    @register("loss", "scaled-ce", ScaledCEConfig, "cross-entropy times a constant (a test plugin)")
    class ScaledCE(ClassificationLoss):
        def classification_loss(self, engine, logits, targets):
            CALLS.append(self.config.scale)
            return self.config.scale * F.cross_entropy(logits, targets)
""")


def test_user_loss_from_cil_plugins(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_cil_plugins.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CIL_PLUGINS", "my_cil_plugins")
    monkeypatch.setattr(registry, "_loaded", False)
    strategy = tmp_path / "mine.yaml"
    strategy.write_text("extends: il-baseline\nloss:\n  name: scaled-ce\n  scale: 0.5\n")
    common = [
        "run",
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        str(strategy),
        "--epochs",
        "1",
        "--no-progress",
        "--limit-per-class",
        "4",
        "--set",
        "model.backbone=tiny",
        "--set",
        "optim.batch_size=8",
        "--set",
        "data.synthetic_classes=10",
        "--set",
        "data.test_limit_per_class=2",
    ]

    assert main([*common, "--set", "loss.scael=2"]) == 2
    assert "unknown key 'loss.scael' (did you mean 'scale'?)" in capsys.readouterr().err

    assert main([*common, "--out", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["loss"] == {"name": "scaled-ce", "scale": 0.5}
    import my_cil_plugins

    assert my_cil_plugins.CALLS and set(my_cil_plugins.CALLS) == {0.5}


def test_user_loss_from_an_installed_entry_point(tmp_path, monkeypatch, capsys):
    """An outside package registers through the same entry-point group as cil's own methods."""
    (tmp_path / "outside_losses.py").write_text(MODULE.replace("scaled-ce", "outside-ce"))
    dist = tmp_path / "outside_losses-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-losses\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cil.plugins]\noutside = outside_losses\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CIL_PLUGINS", raising=False)
    monkeypatch.setattr(registry, "_loaded", False)

    assert "outside-ce" in registry.names("loss")
    assert {"bsce", "ce", "nca"} <= set(registry.names("loss"))  # cil's own, loaded the same way
    assert main(["list"]) == 0
    assert "outside-ce" in capsys.readouterr().out


def test_a_projects_own_strategies_folder_does_not_hide_cil_methods(tmp_path, monkeypatch):
    """cil's methods install as cil.strategies: a user's top-level 'strategies' package is theirs."""
    import subprocess
    import sys

    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "__init__.py").write_text("MINE = True\n")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import strategies, cil.registry as r; "
            "assert strategies.MINE; print(len(r.names('loss')), len(r.names('method')))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    losses, methods = map(int, done.stdout.split())
    assert losses >= 7 and methods >= 5


def test_an_uninstalled_cil_says_how_to_install_it(monkeypatch):
    """No cil.strategies entry point (cil only on PYTHONPATH, or a stale egg-info): one line, not an empty list."""
    import importlib.metadata

    import pytest

    from cil.errors import UserError

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [])
    monkeypatch.setattr(registry, "_loaded", False)
    with pytest.raises(UserError, match="cil's own methods are not registered .*'pip install -e .'"):
        registry.names("loss")
    monkeypatch.setattr(registry, "_loaded", False)  # the next test loads for real
