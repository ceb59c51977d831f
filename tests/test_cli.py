"""The command line: describe without data, list, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from cil.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_describe_json_without_data(capsys):
    code, out, err = run_cli(capsys, "describe", "--scenario", "cifar100-b50-5", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["class_order"][:10] == [68, 56, 78, 8, 23, 84, 90, 65, 74, 76]
    assert len(info["steps"]) == 6 and info["steps"][1]["labels"] == list(range(50, 60))
    assert info["steps"][1]["classes"] == info["class_order"][50:60]


def test_describe_text(capsys):
    code, out, _ = run_cli(capsys, "describe", "--scenario", "imagenet-b0-10")
    assert code == 0 and "1000 classes in 10 steps" in out.splitlines()[0]


def test_describe_folder_uses_folder_names(capsys, image_folder):
    code, out, _ = run_cli(capsys, "describe", "--scenario", "folder-b2-2", "--data-root", str(image_folder), "--json")
    info = json.loads(out)
    assert code == 0 and info["n_classes"] == 6
    assert all(name.startswith("class_") for step in info["steps"] for name in step["class_names"])


def test_list(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for expected in ("il-baseline-bsce", "finetune", "synthetic", "DATASET-bBASE-STEPS", "bsce", "resnet32"):
        assert expected in out


@pytest.mark.parametrize("argv, message", [
    (["run", "--scenario", "cifar100-b50-7", "--strategy", "il-baseline"], "valid step counts"),
    (["run", "--scenario", "cifar101-b50-5", "--strategy", "il-baseline"], "unknown dataset 'cifar101'"),
    (["run", "--scenario", "cifar100-b50-5", "--strategy", "nope"], "unknown strategy 'nope'"),
    (["run", "--scenario", "cifar100-b50-5", "--strategy", "il-baseline", "--set", "optim.lr=x"], "optim.lr"),
    (["run", "--scenario", "cifar100-b50-5", "--strategy", "il-baseline", "--memory", "-3"], "memory.per_class"),
    (["run", "--scenario", "cifar100-b50-5", "--strategy", "il-baseline", "--memory", "2", "--memory-budget", "9"],
     "not allowed with argument"),
    (["run", "--scenario", "cifar100-b50-5", "--strategy", "il-baseline", "--epochs", "0"], "--epochs"),
    (["run", "--scenario", "folder-b2-2", "--strategy", "il-baseline"], "needs --data-root"),
    (["run", "--scenario", "folder-b2-2", "--strategy", "il-baseline", "--data-root", "/nonexistent"],
     "not a directory"),
    (["run", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--set", "model.backbone=vgg"],
     "unknown backbone 'vgg'"),
    (["frobnicate"], "invalid choice"),
    (["run", "--scenario", "cifar100-b50-5"], "needs --scenario and --strategy"),
    (["run", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--seeds", "1,x"], "--seeds"),
    (["run", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--seeds", "1,2", "--seed", "3"],
     "not both"),
    (["run", "--resume", "/nonexistent/run"], "cannot read"),
    (["report", "/nonexistent/runs"], "no such run directory"),
    (["report", ".", "--metric", "speed"], "unknown metric 'speed'"),
    (["sweep", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--grid", "memory"], "--grid expects"),
    (["sweep", "table9"], "unknown sweep 'table9'"),
    (["sweep", "--scenario", "synthetic-b50-5"], "needs strategies"),
    (["plot", "/nonexistent/run"], "no such run directory"),
])
def test_user_mistakes_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cil: error: ") and message in lines[0], err
    assert "Traceback" not in err


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "cil.cli", "describe", "--scenario", "cifar100-b50-9"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "valid step counts" in proc.stderr
