"""What a GPU machine without a package registry needs to run cil: ``make device-bundle``.

    python tools/device_bundle.py [--out .devsite]

Writes, into a folder git ignores (it is added to ``.git/info/exclude``):

* ``wheels/cil-VERSION-py3-none-any.whl``: cil built from this checkout (``pip wheel --no-deps``);
* ``site/``: the pure-Python packages cil imports that the device image lacks (Avalanche and what it imports
  at import time, ``higher``), copied from this environment, plus an empty ``wandb`` package (Avalanche
  imports it at import time; the device has none, and cil's wandb logger is not used there);
* ``manifest.json``: what is in it, with versions and the commit.

The device image (KINDS.md of the device tool: Python 3.12, torch, torchvision, numpy, pandas, matplotlib,
scikit-learn, scipy, pyyaml, tqdm, tensorboard, pytest, hypothesis) has everything else. Compiled packages
are refused: they would have to match the device's Python. Then, on the device, one command:

    python3 benchmarks/gpu_evidence.py --bundle .devsite --out $OUT       (carry: [".devsite"])
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MISSING_ON_DEVICE = (
    "avalanche-lib",
    "higher",
    "dill",
    "gputil",
    "pytorchcv",
    "qpsolvers",
    "gdown",
    "beautifulsoup4",
    "soupsieve",
)
"""cil's import-time dependencies (with Avalanche's) that the device image does not hold."""
LIMIT_MB = 64
"""What the device tool carries in all (working tree included)."""


def copy_distribution(name: str, site: Path) -> str:
    """The installed files of ``name`` (its top-level packages and modules) into ``site``; its version."""
    dist = metadata.distribution(name)
    files = [Path(str(f)) for f in dist.files or []]
    compiled = [f for f in files if f.suffix in (".so", ".pyd")]
    if compiled:
        sys.exit(f"device_bundle: {name} holds compiled code ({compiled[0]}): it cannot travel as plain files")
    for top in sorted({f.parts[0] for f in files}):
        source = Path(str(dist.locate_file(top)))
        if top.endswith((".pth", ".dist-info")) or top in ("..", "bin", "tests", "examples", "docs"):
            continue
        if not source.exists():
            continue
        target = site / top
        if target.exists():
            continue
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        else:
            shutil.copy2(source, target)
    return dist.version


def excluded_from_git(folder: str) -> None:
    exclude = REPO / ".git" / "info" / "exclude"
    if not exclude.parent.is_dir():
        return
    line = f"/{folder.strip('/')}/"
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if line not in lines:
        exclude.write_text("\n".join([*lines, line]) + "\n")


BUNDLE_ENTRIES = {"wheels", "site", "manifest.json"}
"""What a bundle folder holds: the only folder this tool deletes is one holding these and nothing else."""


def why_not_replaceable(out: Path, repo: Path = REPO) -> str | None:
    """Why ``out`` must not be deleted to make room for a new bundle, or None when it may.

    A missing or empty folder, or a previous bundle (its manifest names a cil wheel and it holds nothing
    else), may be replaced; anything else is someone's files (``--out docs`` once emptied the checkout's
    docs/, ``--out .git`` destroyed the repository).
    """
    name = out.relative_to(repo)
    if out == repo / ".git" or repo / ".git" in out.parents:
        return f"--out {name} is inside .git: name a new folder such as .devsite"
    if not out.exists():
        return None
    if not out.is_dir():
        return f"--out {name} is a file: name a new folder such as .devsite"
    entries = {entry.name for entry in out.iterdir()}
    if not entries:
        return None
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = None
    if entries <= BUNDLE_ENTRIES and isinstance(manifest, dict) and "cil_wheel" in manifest:
        return None
    return (
        f"--out {name} holds files that are not a device bundle; it is left as it is: "
        "name a new or empty folder such as .devsite"
    )


def size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".devsite", help="the bundle's folder, inside the checkout (default .devsite)")
    args = parser.parse_args()
    out = (REPO / args.out).resolve()
    refusal = (
        "--out must be a folder inside the checkout (the device tool carries it)"
        if REPO not in out.parents
        else why_not_replaceable(out)
    )
    if refusal:
        print(f"device_bundle: error: {refusal}", file=sys.stderr)
        return 2
    excluded_from_git(str(out.relative_to(REPO)))
    shutil.rmtree(out, ignore_errors=True)
    wheels, site = out / "wheels", out / "site"
    wheels.mkdir(parents=True)
    site.mkdir()
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    subprocess.run([*build, str(REPO)], check=True)
    versions = {name: copy_distribution(name, site) for name in MISSING_ON_DEVICE}
    (site / "wandb").mkdir(exist_ok=True)
    (site / "wandb" / "__init__.py").write_text('"""Stand-in: Avalanche imports wandb; the device has none."""\n')
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    manifest = {
        "cil_wheel": [w.name for w in wheels.glob("*.whl")],
        "site": versions,
        "commit": commit.stdout.strip(),
        "built_with_python": sys.version.split()[0],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    size = size_mb(out)
    print(f"{out.relative_to(REPO)}: {size:.1f} MB ({', '.join(manifest['cil_wheel'])}; {len(versions)} packages)")
    if size > LIMIT_MB / 2:
        print(f"warning: over half of the {LIMIT_MB} MB the device tool carries in all")
    print('on the device: python3 benchmarks/gpu_evidence.py --bundle .devsite --out $OUT   (carry: [".devsite"])')
    return 0


if __name__ == "__main__":
    sys.exit(main())
