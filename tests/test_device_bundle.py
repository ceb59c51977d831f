"""tools/device_bundle.py deletes only what it made: a previous bundle, never someone's folder."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools.device_bundle import why_not_replaceable

REPO = Path(__file__).resolve().parent.parent


def test_a_missing_empty_or_previous_bundle_folder_may_be_replaced(tmp_path):
    assert why_not_replaceable(tmp_path / "new", repo=tmp_path) is None
    (tmp_path / "empty").mkdir()
    assert why_not_replaceable(tmp_path / "empty", repo=tmp_path) is None
    bundle = tmp_path / ".devsite"
    (bundle / "wheels").mkdir(parents=True)
    (bundle / "site").mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"cil_wheel": ["cil-0.1.0-py3-none-any.whl"]}))
    assert why_not_replaceable(bundle, repo=tmp_path) is None


@pytest.mark.parametrize("make", ["docs", "bundle-plus-notes", "no-manifest", "file", ".git", ".git/hooks"])
def test_anything_else_is_refused(tmp_path, make):
    out = tmp_path / make
    if make == "docs":
        out.mkdir()
        (out / "index.md").write_text("# docs\n")
    elif make == "bundle-plus-notes":
        (out / "wheels").mkdir(parents=True)
        (out / "manifest.json").write_text(json.dumps({"cil_wheel": []}))
        (out / "notes.txt").write_text("mine\n")
    elif make == "no-manifest":
        (out / "wheels").mkdir(parents=True)
    elif make == "file":
        out.write_text("x")
    else:
        out.mkdir(parents=True)
    why = why_not_replaceable(out, repo=tmp_path)
    assert why is not None and why.startswith(f"--out {make}")


@pytest.mark.parametrize("out", ["docs", ".git"])
def test_the_tool_leaves_the_checkout_alone(out):
    before = sorted(p.name for p in (REPO / out).iterdir())
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "device_bundle.py"), "--out", out], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("device_bundle: error: --out")
    assert sorted(p.name for p in (REPO / out).iterdir()) == before
