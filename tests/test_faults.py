"""Faults from outside cil (issue: the operating system says no, planted links): every write the OS refuses ends
in one line naming the path and the reason, exit code 74, the completed steps kept, and a resume that finishes
the run as an uninterrupted one would have.

The fault injector refuses the N-th write cil makes inside the run directory (opening a file for writing,
creating a folder, renaming over a file, removing a file), whoever makes it: cil's own files, the checkpoint,
the loggers (TensorBoard's event files through its own code, the CSV logs). Each point of a tiny run is made to
fail in turn, with ENOSPC, EROFS and EACCES in rotation.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from cil.cli import main

TINY = [
    "--scenario",
    "synthetic-b4-2",
    "--strategy",
    "il-baseline",
    "--epochs",
    "1",
    "--limit-per-class",
    "6",
    "--no-progress",
    "--logger",
    "tensorboard,csv",
    "--set",
    "model.backbone=tiny",
    "--set",
    "data.synthetic_classes=8",
    "--set",
    "data.test_limit_per_class=2",
    "--set",
    "memory.per_class=2",
]
ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES)


class WriteRefuser:
    """Counts the writes under ``root`` and refuses the ``fail_at``-th (1-based) with ``code``."""

    def __init__(self, root: Path, fail_at: int | None = None, code: int = errno.ENOSPC):
        self.root, self.fail_at, self.code = str(root.resolve()), fail_at, code
        self.points: list[str] = []

    def check(self, what: str, path) -> None:
        if isinstance(path, int) or path is None:
            return
        full = os.path.abspath(os.fsdecode(path))
        if not (full == self.root or full.startswith(self.root + os.sep)):
            return
        self.points.append(f"{what} {os.path.relpath(full, self.root)}")
        if len(self.points) == self.fail_at:
            raise OSError(self.code, os.strerror(self.code), full)


@contextmanager
def refusing(refuser: WriteRefuser):
    real = {
        "open": builtins.open,
        "os.open": os.open,
        "mkdir": os.mkdir,
        "replace": os.replace,
        "rename": os.rename,
        "unlink": os.unlink,
    }
    writing_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def patched_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            refuser.check("open", file)
        return real["open"](file, mode, *args, **kwargs)

    def patched_os_open(path, flags, *args, **kwargs):
        if flags & writing_flags and "dir_fd" not in kwargs:
            refuser.check("open", path)
        return real["os.open"](path, flags, *args, **kwargs)

    def wrap(name, what, position=0):
        def patched(*args, **kwargs):
            existing_folder = name == "mkdir" and os.path.isdir(args[0])  # Path.mkdir(exist_ok=True) ignores errors
            if "dir_fd" not in kwargs and "src_dir_fd" not in kwargs and not existing_folder:
                refuser.check(what, args[position])
            return real[name](*args, **kwargs)

        return patched

    patches = [
        (builtins, "open", patched_open),
        (io, "open", patched_open),
        (os, "open", patched_os_open),
        (os, "mkdir", wrap("mkdir", "mkdir")),
        (os, "replace", wrap("replace", "replace", 1)),
        (os, "rename", wrap("rename", "rename", 1)),
        (os, "unlink", wrap("unlink", "unlink")),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    try:
        for module, name, value in patches:
            setattr(module, name, value)
        yield refuser
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def accuracies(run_dir: Path) -> list[float]:
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "complete"
    return [step["accuracy"] for step in results["steps"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, and the writes it makes (the points to fail)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    with refusing(WriteRefuser(out)) as counted:
        assert main(["run", *TINY, "--out", str(out)]) == 0
    return accuracies(out), counted.points


def test_the_tiny_run_writes_in_every_place_a_run_writes(reference):
    _, points = reference
    written = " ".join(points)
    for place in ("results.json", "config.yaml", "metrics.csv", "checkpoints", "confusion", "tensorboard", "logs"):
        assert place in written, (place, points)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # no thread's traceback
def test_each_refused_write_is_one_line_and_the_run_resumes(tmp_path, capsys, reference):
    """Every write point of the tiny run refused in turn: exit 74, one line naming a path in the run directory
    and the OS's reason, what to run next; after it the run (resumed, or started again when nothing was
    recorded) ends complete with the accuracies of the uninterrupted run."""
    expected, points = reference
    assert len(points) > 20
    for k in range(1, len(points) + 1):
        out = tmp_path / f"k{k}"
        code = ERRNOS[k % len(ERRNOS)]
        with refusing(WriteRefuser(out, fail_at=k, code=code)) as refuser:
            status = main(["run", *TINY, "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        where = f"point {k} ({refuser.points[k - 1]})"
        if refuser.points[k - 1] == "unlink .claim":  # the run is complete; its claim stays, stale, taken over next
            assert status == 0 and accuracies(out) == expected and (out / ".claim").exists()
            continue
        assert status == 74, (where, err)
        errors = [line for line in err if line.startswith("cil: error: ")]
        assert len(errors) == 1 and errors[0] == err[-1] and "Traceback" not in "\n".join(err), (where, err)
        line = err[-1]
        assert line.startswith(f"cil: error: cannot write {out}") and os.strerror(code) in line, (where, line)
        if "the run itself is complete" in line:  # a logger's last file (TensorBoard's hparams)
            assert accuracies(out) == expected, where
            continue
        assert "continue with: cil run --resume" in line or "run the same command again" in line, (where, line)
        again = ["run", "--resume", str(out)] if "--resume" in line else ["run", *TINY, "--out", str(out)]
        assert main(again) == 0, (where, capsys.readouterr().err)
        capsys.readouterr()
        assert accuracies(out) == expected, where


# ------------------------------------------------------------------ links planted in a run directory

PLANTED = ["results.json", "metrics.csv", "config.yaml", "run.log", "checkpoints", "confusion", "tensorboard", "logs"]


def plant(out: Path, name: str, victim: Path) -> None:
    """``out/name`` as a link to ``victim`` (a folder holding a file, or a file), both outside ``out``."""
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    if "." in name:
        victim.write_text("the victim's own data\n")
    else:
        victim.mkdir()
        (victim / "step_01.npy").write_text("the victim's own data\n")
        (victim / "last.pt").write_text("the victim's own data\n")
    (out / name).symlink_to(victim)


def untouched(victim: Path) -> bool:
    files = [victim] if victim.is_file() else sorted(victim.rglob("*"))
    return [p.name for p in files] in (["victim"], ["last.pt", "step_01.npy"]) and all(
        p.read_bytes() == b"the victim's own data\n" for p in files
    )


@pytest.mark.parametrize("how", ["new", "--overwrite", "--resume"])
@pytest.mark.parametrize("name", PLANTED + ["confusion/step_01.npy", "checkpoints/last.pt"])
def test_a_link_where_a_run_writes_is_refused_and_nothing_it_points_to_changes(tmp_path, capsys, reference, name, how):
    """A link named like something the run writes (or planted inside one of its folders) is refused in one line
    before anything is written, removed or appended; what it points to is left as it was."""
    out, victim = tmp_path / "run", tmp_path / "victim"
    if how != "new":
        assert main(["run", *TINY, "--out", str(out)]) == 0
        capsys.readouterr()
        target = out / name
        if target.is_dir():
            import shutil

            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    plant(out, name, victim)
    argv = ["run", "--resume", str(out)] if how == "--resume" else ["run", *TINY, "--out", str(out)]
    if how == "--overwrite":
        argv.append("--overwrite")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{out / name} is a symbolic link" in err[0], err
    assert untouched(victim)


def test_a_sweep_worker_does_not_append_its_log_through_a_planted_link(tmp_path):
    """A sweep worker writes RUN_DIR/run.log before it claims the run: a link there is refused (O_NOFOLLOW),
    the run is listed failed with the line, and the file it points to is left alone."""
    import subprocess
    import sys

    out = tmp_path / "sweep"
    run_dir = out / "synthetic-b4-2" / "il-baseline" / "seed1993"
    victim = tmp_path / "victim"
    plant(run_dir, "run.log", victim)
    argv = [sys.executable, "-m", "cil", "sweep", *TINY, "--seeds", "1993,1994", "--jobs", "2", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    assert done.returncode == 1, done.stderr
    assert f"failed: {run_dir}: cannot write {run_dir / 'run.log'}: it is a symbolic link" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads((run_dir.parent / "seed1994" / "results.json").read_text())["status"] == "complete"
    assert untouched(victim)
