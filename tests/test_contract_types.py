"""The type checker proves the engine keeps the plugin contract (issue 33): an engine that renames a member of
``Engine`` or changes its signature fails ``make lint``. mypy checks a broken copy of cil/training/engine.py in
the engine's place (``--shadow-file``); the tree itself is not touched."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "cil" / "training" / "engine.py"


def mypy_on_engine_as(tmp_path: Path, old: str, new: str) -> tuple[int, str]:
    from mypy import api

    source = ENGINE.read_text()
    assert old in source
    broken = tmp_path / "engine.py"
    broken.write_text(source.replace(old, new))
    cache = tmp_path / "mypy-cache"
    out, err, status = api.run(
        [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(cache),
            "--shadow-file",
            str(ENGINE),
            str(broken),
            str(ENGINE),
        ]
    )
    return status, out + err


@pytest.mark.slow
@pytest.mark.parametrize(
    "old, new, message",
    [
        ("    def hold_out(self, per_class: int)", "    def hold_out_samples(self, per_class: int)", "hold_out"),
        (
            "    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:",
            "    def scale_loss(self, loss: torch.Tensor, factor: float) -> torch.Tensor:",
            "scale_loss",
        ),
    ],
    ids=["renamed", "signature"],
)
def test_mypy_fails_on_an_engine_that_breaks_the_protocol(tmp_path, old, new, message):
    status, output = mypy_on_engine_as(tmp_path, old, new)
    assert status == 1, output
    assert '"TrainingEngine"' in output and '"Engine"' in output and message in output, output
