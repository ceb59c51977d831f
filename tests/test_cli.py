"""The command line: describe without data, list, and one-line errors with exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

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
    order_lines = [line for line in out.splitlines() if '"class_order"' in line]
    assert len(order_lines) == 1 and order_lines[0].split("[")[1].split("]")[0].count(",") == 99  # one line
    assert len(out.splitlines()) < 60


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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--scenario", "cifar100-b50-7", "--strategy", "il-baseline"], "valid step counts"),
        (["run", "--scenario", "cifar101-b50-5", "--strategy", "il-baseline"], "unknown dataset 'cifar101'"),
        (["run", "--scenario", "cifar100-b50-5", "--strategy", "nope"], "unknown strategy 'nope'"),
        (["run", "--scenario", "cifar100-b50-5", "--strategy", "il-baseline", "--set", "optim.lr=x"], "optim.lr"),
        (["run", "--scenario", "cifar100-b50-5", "--strategy", "il-baseline", "--memory", "-3"], "memory.per_class"),
        (
            [
                "run",
                "--scenario",
                "cifar100-b50-5",
                "--strategy",
                "il-baseline",
                "--memory",
                "2",
                "--memory-budget",
                "9",
            ],
            "not allowed with argument",
        ),
        (["run", "--scenario", "cifar100-b50-5", "--strategy", "il-baseline", "--epochs", "0"], "--epochs"),
        (["run", "--scenario", "folder-b2-2", "--strategy", "il-baseline"], "needs --data-root"),
        (
            ["run", "--scenario", "folder-b2-2", "--strategy", "il-baseline", "--data-root", "/nonexistent"],
            "not a directory",
        ),
        (
            ["run", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--set", "model.backbone=vgg"],
            "unknown backbone 'vgg'",
        ),
        (["frobnicate"], "invalid choice"),
        (["run", "--scenario", "cifar100-b50-5"], "needs --scenario and --strategy"),
        (["run", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--seeds", "1,x"], "--seeds"),
        (["run", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--seeds", "1,,2"], "got '1,,2'"),
        (
            [
                "run",
                "--scenario",
                "synthetic-b50-5",
                "--strategy",
                "il-baseline",
                "--set",
                f"logging.wandb_tags=[{'t' * 65}]",
            ],
            "invalid value for 'logging.wandb_tags.0': a W&B tag has 1 to 64 characters",
        ),
        (["sweep", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--seeds", "1,2,"], "got '1,2,'"),
        (
            ["run", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--seeds", "1,2", "--seed", "3"],
            "not both",
        ),
        (["run", "--resume", "/nonexistent/run"], "holds no run (results.json is missing)"),
        (["report", "/nonexistent/runs"], "no such run directory"),
        (["report", ".", "--metric", "speed"], "unknown metric 'speed'"),
        (["report", ".", "--metric", "aia"], "metric 'aia' is now called 'avg_incremental_accuracy'"),
        (["sweep", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--grid", "memory"], "--grid expects"),
        (["sweep", "table9"], "unknown sweep 'table9'"),
        (["sweep", "--scenario", "synthetic-b50-5"], "needs strategies"),
        (["plot", "/nonexistent/run"], "no such run directory"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cil: error: ") and message in lines[0], err
    assert "Traceback" not in err


def test_console_script_exit_code():
    proc = subprocess.run(
        [sys.executable, "-m", "cil", "describe", "--scenario", "cifar100-b50-9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "valid step counts" in proc.stderr


# ------------------------------------------------------------------ what a newcomer sees

TINY_RUN = [
    "run",
    "--scenario",
    "synthetic-b4-1",
    "--strategy",
    "il-baseline",
    "--epochs",
    "2",
    "--limit-per-class",
    "8",
    "--no-tensorboard",
    "--set",
    "model.backbone=tiny",
    "--set",
    "optim.batch_size=8",
    "--set",
    "data.synthetic_classes=6",
    "--set",
    "data.test_limit_per_class=2",
]


def test_off_a_terminal_every_epoch_prints_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, *TINY_RUN, "--out", str(tmp_path / "run"))
    assert code == 0
    lines = [line for line in err.splitlines() if " epoch " in line]
    assert [line.split(":")[0] for line in lines] == [
        "step 0 epoch 1/2",
        "step 0 epoch 2/2",
        "step 1 epoch 1/2",
        "step 1 epoch 2/2",
    ]
    assert all("loss " in line and "images/s" in line and "s into the step" in line for line in lines)
    _, _, quiet = run_cli(capsys, *TINY_RUN, "--out", str(tmp_path / "quiet"), "--no-progress")
    assert " epoch " not in quiet


def test_an_interrupted_run_says_so_once(tmp_path, capsys, monkeypatch):
    import cil.training.engine

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cil.training.engine, "run_steps", interrupt)
    code, _, err = run_cli(capsys, *TINY_RUN, "--out", str(tmp_path / "run"))
    assert code == 130
    assert "continue with: cil run --resume" in err and "cil: interrupted" not in err


def test_an_interrupt_before_anything_was_saved_leaves_no_folder(tmp_path, capsys, monkeypatch):
    import cil.runs.run

    def interrupt(cfg, loaded=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cil.runs.run, "prepare", interrupt)
    code, _, err = run_cli(capsys, *TINY_RUN, "--out", str(tmp_path / "runs" / "new" / "run"))
    assert code == 130 and err.strip().splitlines() == ["cil: interrupted"]
    assert list(tmp_path.iterdir()) == []  # neither the run folder nor the parents it created


def test_a_failed_download_leaves_no_data_folder(tmp_path, monkeypatch):
    from urllib.error import URLError

    from torchvision import datasets

    from cil.data.cifar import load_cifar
    from cil.errors import UserError

    def offline(self):  # what torchvision does offline: make the folder, start the file, fail
        Path(self.root).mkdir(parents=True, exist_ok=True)
        (Path(self.root) / "cifar-100-python.tar.gz").write_bytes(b"partial")
        raise URLError("no network")

    monkeypatch.setattr(datasets.CIFAR100, "download", offline)
    with pytest.raises(UserError, match="could not be downloaded"):
        load_cifar("cifar100", str(tmp_path / "data"), train=True)
    assert not (tmp_path / "data").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(UserError):
        load_cifar("cifar100", str(tmp_path / "mine"), train=True)
    assert (tmp_path / "mine" / "notes.txt").exists()  # a folder the user had is left alone


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["describe", "--scenario", "synthetic-b50-5", "--class-order-seed", "-5"],
            "invalid value for '--class-order-seed': must be in [0, 4294967295]",
        ),
        (
            ["run", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--seed", "-1"],
            "invalid value for 'seed': must be in [0, 4294967295]",
        ),
        (
            ["run", "--scenario", "synthetic-b50-5", "--strategy", "il-baseline", "--seeds=-1,2"],
            "invalid value for 'seed': must be in [0, 4294967295]",
        ),
    ],
)
def test_seeds_out_of_range_are_one_line(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and err.strip() == f"cil: error: {message}"


def test_output_places_are_checked_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    run_dir = tmp_path / "nowhere"
    for argv, message in [
        (["plot", str(run_dir), "--out", str(a_file)], f"--out {a_file}: not a folder"),
        (
            ["plot", str(run_dir), "--out", str(a_file / "sub")],
            f"--out {a_file / 'sub'}: not a folder ({a_file} is a file)",
        ),
        (
            ["sweep", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline", "--out", str(a_file), "--dry-run"],
            f"--out {a_file}: not a folder",
        ),
        (
            ["run", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline", "--out", str(a_file / "r")],
            f"--out {a_file / 'r'}: not a folder ({a_file} is a file)",
        ),
        (
            ["run", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline", "--out", "/proc/cil/run"],
            "--out /proc/cil/run: cannot create anything in /proc (",
        ),
    ]:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and err.strip().startswith(f"cil: error: {message}") and err.count("\n") == 1, err
    assert not run_dir.exists()  # the plot was refused before its (missing) runs were read


def test_printed_commands_are_ones_this_shell_can_run(monkeypatch, tmp_path):
    """After `make demo`, `cil` is .venv/bin/cil, not on the PATH: the resume hint must say so."""
    import sys

    from cil.processes import cil_command

    script = tmp_path / "venv" / "bin" / "cil"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script), "run"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert cil_command() == str(script)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert cil_command() == "cil"
    monkeypatch.setattr(sys, "argv", ["/somewhere/cil/__main__.py", "run"])
    assert cil_command().endswith("python -m cil") or cil_command() == f"{sys.executable} -m cil"


def test_seeds_load_the_dataset_once_and_match_single_runs(tmp_path, monkeypatch, capsys):
    import json
    from dataclasses import replace

    from cil.data import DATASETS

    spec = DATASETS["synthetic"]
    loads = []
    real = spec.load

    def counting(data):
        loads.append(1)
        return real(data)

    from cil.runs import assemble

    parse = assemble.parse_scenario
    monkeypatch.setattr(assemble, "parse_scenario", lambda scenario: (parse(scenario)[0], replace(spec, load=counting)))
    tiny = ["--scenario", "synthetic-b6-2", "--strategy", "il-baseline", "--epochs", "1", "--limit-per-class", "6"]
    tiny += ["--no-progress", "--logger", "none", "--set", "model.backbone=tiny", "--set", "data.synthetic_classes=10"]
    assert main(["run", *tiny, "--seeds", "1,2", "--out", str(tmp_path / "both")]) == 0
    assert len(loads) == 1
    assert main(["run", *tiny, "--seed", "2", "--out", str(tmp_path / "alone")]) == 0
    capsys.readouterr()

    def accuracies(run_dir):
        return [s["accuracy"] for s in json.loads((run_dir / "results.json").read_text())["steps"]]

    assert accuracies(tmp_path / "both" / "seed2") == accuracies(tmp_path / "alone")


@pytest.mark.parametrize("name", ["runs/with space", "runs/it's", "runs/$(touch pwned)", 'runs/"q"`x`'])
def test_printed_commands_paste_back_into_a_shell_as_the_same_words(name):
    """Issue 35 item 12: a run directory with a space, a quote or $(...) gives a resume command that a shell
    reads as the same path, never running what is inside it."""
    import shlex
    from pathlib import Path

    from cil.processes import command_line
    from cil.runs.run import resume_command

    assert shlex.split(resume_command(Path(name)))[-3:] == ["run", "--resume", name]
    assert shlex.split(command_line("sweep", "--status", name))[-3:] == ["sweep", "--status", name]
