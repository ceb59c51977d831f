"""cil installed as a package: its YAML files are package data, found from any directory."""

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from cil.cli import main
from cil.config import available_strategies, config_root

ROOT = Path(__file__).resolve().parent.parent


def test_configs_are_found_as_package_data(tmp_path, monkeypatch):
    from importlib.resources import files

    monkeypatch.chdir(tmp_path)  # nothing is looked up relative to the working directory
    assert config_root() == Path(str(files("cil.configs")))
    assert len(available_strategies()) == len(list((ROOT / "configs" / "strategies").glob("*.yaml")))
    pyproject = (ROOT / "pyproject.toml").read_text()
    for folder in ("scenarios", "strategies", "sweeps"):
        assert f'"cil.configs.{folder}" = ["*.yaml"]' in pyproject


def test_a_closed_output_pipe_is_not_a_traceback():
    done = subprocess.run(
        f"{sys.executable} -m cil list | head -n 1", shell=True, capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.stdout.startswith("Scenarios:") and "Traceback" not in done.stderr and done.stderr == ""


@pytest.mark.slow
def test_a_built_wheel_runs_from_another_directory(tmp_path):
    """pip install of a wheel (not editable), then a run from an unrelated folder, without warning lines."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp_path / "whl")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "deps.pth").write_text("\n".join(deps) + "\n")  # torch & co. from this environment
    wheel = next((tmp_path / "whl").glob("cil-*.whl"))
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [
            str(env_dir / "bin" / "cil"),
            "run",
            "--scenario",
            "synthetic-b6-2",
            "--strategy",
            "il-baseline-bsce",
            "--epochs",
            "1",
            "--limit-per-class",
            "5",
            "--no-progress",
            "--set",
            "model.backbone=tiny",
            "--set",
            "data.synthetic_classes=10",
            "--set",
            "data.test_limit_per_class=2",
            "--out",
            "r",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONWARNINGS")},
    )
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "r" / "results.json").exists()
    assert not [line for line in done.stderr.splitlines() if "warn" in line.lower()], done.stderr


def test_main_is_importable_without_side_effects(capsys):
    assert main(["list"]) == 0
    assert "il-baseline-bsce" in capsys.readouterr().out


HEAVY = ("torch", "torchvision", "avalanche", "higher", "matplotlib", "pandas")

_PROBE = """
import contextlib, io, sys
from cil.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        code = main(sys.argv[1:])
    except SystemExit as done:  # --help and --version exit through argparse
        code = done.code
print(code, len(out.getvalue()), *[m for m in {heavy!r} if m in sys.modules])
"""


@pytest.mark.parametrize(
    "argv", [["--help"], ["--version"], ["list"], ["describe", "--scenario", "cifar100-b50-5"], ["run", "--help"]]
)
def test_commands_that_train_nothing_import_no_torch_or_avalanche(argv):
    """Naming and describing things must not cost the 10 s of importing torch and Avalanche."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *argv], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    code, printed, *imported = done.stdout.split()
    assert (code, imported, done.stderr) == ("0", [], "")
    assert int(printed) > 0


def test_declared_components_are_the_registered_ones():
    """Every component cil declares (for listing without imports) registers under the same name and summary."""
    from cil import registry

    before = registry.summaries()
    for kind, name, summary in before:
        registry.component(kind, name)  # imports the declaring module, which must register the name
        assert summary
    assert registry.summaries() == before


def test_every_subpackage_is_listed_for_the_wheel():
    """pyproject.toml lists the packages explicitly (package-dir mapping): a new folder must be added there."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "cil").rglob("__init__.py")}
    assert found - listed == set()


def test_only_the_known_import_noise_is_filtered():
    """qpsolvers' "no QP solver" (Avalanche's requirement installs no solver today) and tqdm's "IProgress not
    found" are silenced, from those modules only; any other warning, even from them, still shows."""
    import importlib
    import warnings

    import cil

    def emitted(message: str, module: str) -> bool:
        with warnings.catch_warnings(record=True) as caught:  # restores the filters afterwards
            warnings.simplefilter("default")
            importlib.reload(cil)  # cil's filters, on top of "show everything"
            warnings.warn_explicit(message, UserWarning, f"{module.replace('.', '/')}.py", 1, module=module)
        return bool(caught)

    assert not emitted("no QP solver found on your system, you can install solvers", "qpsolvers.solvers")
    assert not emitted("IProgress not found. Please update jupyter and ipywidgets.", "tqdm.notebook")
    assert emitted("no QP solver found on your system", "mine")
    assert emitted("another qpsolvers warning", "qpsolvers.solvers")
