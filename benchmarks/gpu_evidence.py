"""Everything cil claims about GPUs, proved in one command within a device's few minutes.

    python3 benchmarks/gpu_evidence.py --bundle .devsite --out DIR      # on the GPU machine
    python benchmarks/gpu_evidence.py --dry-run --out DIR                # the same sequence on the CPU, tiny

``--bundle`` installs cil from the wheel that ``make device-bundle`` put in ``.devsite/wheels`` (into a
temporary folder, with the bundle's pure-Python dependencies beside it) and runs every phase against that
installed copy, from a workspace holding only ``tests/``, ``benchmarks/`` and ``pyproject.toml`` (so nothing
imports the checkout's sources). Without ``--bundle`` the current environment's cil is used. The phases, each
in its own process with its share of ``--budget`` seconds (default 540: nine minutes):

1. ``gpu`` tests (``pytest -m gpu -x``, in 4 processes with pytest-xdist where installed): stops at the first
   failure and prints it (the figures are still
   measured: a device is lent rarely; the command then exits 1);
2. ``benchmarks/training_speed.py``: engine images/s per runtime setting, base and incremental step, against
   the plain loop, the anchors' PIL loop and Avalanche's own loop;
3. a full-schedule ``synthetic-b50-5`` run of ``podnet-bsce`` and of ``il-baseline-bsce`` timed phase by
   phase over a few epochs of each step at full data and extrapolated to the paper's schedule ("predicted full
   run: N min"), then the full ``podnet-bsce`` run itself when the prediction fits the time left;
4. ``cil sweep --jobs 1,2,4,8`` on a short grid: runs per hour;
5. ``benchmarks/input_pipeline.py``: device decoding against PIL workers.

It prints one table and writes ``DIR/gpu_evidence.json`` (rewritten after every phase, so a cut run keeps what
finished) and each phase's output to ``DIR/<phase>.log``. ``--dry-run`` runs the same sequence on the CPU at
tiny sizes (the gpu tests with ``CIL_TEST_DEVICE=cpu`` on a few cases) in about a minute; a test runs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHASES = ("gpu-tests", "training-speed", "schedule", "sweep-throughput", "input-pipeline")
SHARE = {"gpu-tests": 0.45, "training-speed": 0.17, "schedule": 0.2, "sweep-throughput": 0.11, "input-pipeline": 0.07}
"""Each phase's share of the budget; time a phase leaves unused goes to the later ones."""
DRY_TESTS = [
    "tests/test_gpu.py::test_every_strategy_under_the_default_runtime[il-baseline-bsce]",
    "tests/test_gpu.py::test_representative_strategies_under_every_setting[podnet-meta-bsce-runtime.precision=fp16]",
]
"""The few gpu tests a dry run takes on the CPU (the whole mark takes ten minutes there)."""
TEST_PROCESSES = 4
"""pytest-xdist workers for the gpu tests on the device (its image has pytest-xdist; without it, one process)."""


@dataclass
class Phase:
    name: str
    status: str = "not run"
    headline: str = ""
    seconds: float = 0.0
    details: dict = field(default_factory=dict)


@dataclass
class Context:
    out: Path
    workspace: Path
    env: dict[str, str]
    dry: bool
    deadline: float
    device: str

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def share(self, name: str) -> float:
        """This phase's seconds: its share of what is left, with the later phases' shares kept for them."""
        later = PHASES[PHASES.index(name) :]
        return max(1.0, self.left() * SHARE[name] / sum(SHARE[p] for p in later))

    def run(self, phase: Phase, argv: list[str], timeout: float, **env: str) -> str:
        """Run ``argv`` (a Python program) in the workspace within ``timeout``; its output, also in DIR/phase.log."""
        log = self.out / f"{phase.name}.log"
        try:
            done = subprocess.run(
                [sys.executable, *argv],
                cwd=self.workspace,
                env={**self.env, **env},
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            output, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as cut:
            output = _text(cut.stdout) + _text(cut.stderr)
            code = None
        log.write_text(output)
        if code is None:
            raise PhaseTimeout(f"stopped at its {timeout:.0f} s share of the budget (output in {log.name})")
        if code != 0:
            raise PhaseFailed(output.strip().splitlines()[-1] if output.strip() else f"exit code {code}", output)
        return output


class PhaseTimeout(Exception):
    pass


class PhaseFailed(Exception):
    def __init__(self, line: str, output: str):
        super().__init__(line)
        self.output = output


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


# ------------------------------------------------------------------ the phases


def gpu_tests(ctx: Context, phase: Phase) -> None:
    argv = ["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "gpu", "-W", "ignore::DeprecationWarning"]
    argv += DRY_TESTS if ctx.dry else ["tests"]
    if not ctx.dry and importlib.util.find_spec("xdist") is not None:
        argv += ["-n", str(TEST_PROCESSES)]  # tiny runs leave the GPU mostly idle; compiling wants CPU cores
    try:
        output = ctx.run(phase, argv, ctx.share(phase.name), **({"CIL_TEST_DEVICE": "cpu"} if ctx.dry else {}))
    except PhaseFailed as failed:
        print(_first_failure(failed.output), flush=True)
        raise
    summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|skipped)", line)]
    phase.headline = summary[-1].strip("= ") if summary else "no summary"
    phase.details["summary"] = phase.headline


def _first_failure(output: str) -> str:
    """pytest's report of the first failure (-x stops there)."""
    start = output.find("= FAILURES =")
    return output[max(0, output.rfind("\n", 0, start)) :] if start >= 0 else output[-6000:]


def training_speed(ctx: Context, phase: Phase) -> None:
    report = ctx.out / "training_speed.json"
    sizes = (
        ["--quick", "--per-class", "4", "--workers", "1", "--backbone", "resnet8"]
        if ctx.dry
        else ["--per-class", "200"]
    )
    ctx.run(
        phase,
        ["benchmarks/training_speed.py", "--device", ctx.device, *sizes, "--json", str(report)],
        ctx.share(phase.name),
    )
    summary = json.loads(report.read_text())
    phase.details.update(summary)
    engine = [r for r in summary["rows"] if r["loop"].startswith("(c) engine il-baseline")]
    best = max(engine, key=lambda r: r["base_images_per_s"])
    phase.headline = (
        f"engine {best['base_images_per_s']:,.0f} img/s ({best['setting']}); engine/plain same setting "
        f"{summary['ratio_engine_plain_same_setting']:.2f}; engine/avalanche {summary['ratio_engine_avalanche']:.2f}"
    )


def schedule(ctx: Context, phase: Phase) -> None:
    """Phase timings of both strategies (in a child process), then the full PODNet-BSCE run if it fits."""
    report = ctx.out / "schedule.json"
    ctx.run(phase, [__file__, "--time-phases", str(report), *(["--dry-run"] if ctx.dry else [])], ctx.share(phase.name))
    timings = json.loads(report.read_text())
    phase.details["predicted"] = timings
    phase.headline = "; ".join(f"{s}: predicted full run {t['predicted_s'] / 60:.1f} min" for s, t in timings.items())
    predicted = timings["podnet-bsce"]["predicted_s"]
    later = sum(SHARE[p] for p in PHASES[PHASES.index("sweep-throughput") :]) / sum(SHARE.values())
    spare = ctx.left() * (1 - later)
    if predicted * 1.2 > spare:
        phase.details["full_run"] = f"not run: predicted {predicted:.0f} s, {spare:.0f} s to spare"
        return
    out = ctx.out / "podnet-bsce-full"
    argv = ["-m", "cil", "run", "--scenario", "synthetic-b50-5", "--strategy", "podnet-bsce", "--out", str(out)]
    argv += ["--overwrite", "--no-progress", "--logger", "none", "--device", ctx.device, *(TINY_RUN if ctx.dry else [])]
    started = time.monotonic()
    ctx.run(phase, argv, spare)
    results = json.loads((out / "results.json").read_text())
    seconds = time.monotonic() - started
    phase.details["full_run"] = {
        "seconds": seconds,
        "avg_incremental_accuracy": results["avg_incremental_accuracy"],
        "predicted_s": predicted,
    }
    phase.headline += (
        f"; podnet-bsce full run {seconds / 60:.1f} min, avg incremental accuracy "
        f"{results['avg_incremental_accuracy']:.2f}"
    )


TINY_RUN = ["--epochs", "1", "--limit-per-class", "6", "--set", "model.backbone=resnet8", "--set",
            "data.test_limit_per_class=4"]  # fmt: skip
"""A dry run's stand-in for the full schedule at full data."""


def time_phases(report: Path, dry: bool) -> None:
    """In a child process: a few epochs of every step of each strategy at full data, extrapolated."""
    import torch

    from cil import api

    device = "cpu" if dry else "cuda"
    probe_epochs = 1 if dry else 3
    predicted = {}
    for strategy in ("podnet-bsce", "il-baseline-bsce"):
        schedule_epochs = probe_epochs if dry else api.experiment_config("synthetic-b50-5", strategy).optim.epochs
        timer = EpochSeconds()
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            api.run_experiment(
                "synthetic-b50-5",
                strategy,
                out=out,
                epochs=probe_epochs,
                device=device,
                progress=False,
                loggers=[],
                extra_plugins=[timer],
                log=lambda line: None,
                **(
                    {"limit_per_class": 6, "overrides": {"model.backbone": "resnet8", "data.test_limit_per_class": 4}}
                    if dry
                    else {}
                ),
            )
        wall = time.perf_counter() - started
        per_step = {step: min(s[1:] or s) for step, s in timer.seconds.items()}  # epoch 1 warms up
        trained = sum(sum(s) for s in timer.seconds.values())
        outside = wall - trained  # herding, evaluation, checkpoints, start-up: independent of the epochs
        predicted[strategy] = {
            "schedule_epochs": schedule_epochs,
            "probe_epochs": probe_epochs,
            "epoch_seconds": per_step,
            "outside_training_s": outside,
            "predicted_s": outside + schedule_epochs * sum(per_step.values()),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        }
        print(f"{strategy}: predicted full run {predicted[strategy]['predicted_s'] / 60:.1f} min", flush=True)
    report.write_text(json.dumps(predicted, indent=1))


class EpochSeconds:
    """An Avalanche plugin: each training epoch's wall time, per step (the device synchronised at both ends)."""

    def __init__(self):
        self.seconds: dict[int, list[float]] = {}
        self._start = 0.0

    def _sync(self, strategy) -> None:
        import torch

        if torch.device(strategy.device).type == "cuda":
            torch.cuda.synchronize()

    def before_training_epoch(self, strategy, **kwargs):
        self._sync(strategy)
        self._start = time.perf_counter()

    def after_training_epoch(self, strategy, **kwargs):
        self._sync(strategy)
        self.seconds.setdefault(strategy.step, []).append(time.perf_counter() - self._start)


def sweep_throughput(ctx: Context, phase: Phase) -> None:
    jobs = (1, 2) if ctx.dry else (1, 2, 4, 8)
    sizes = TINY_RUN if ctx.dry else ["--epochs", "2", "--limit-per-class", "100", "--set", "model.backbone=resnet32"]
    budget = ctx.share(phase.name)
    rates = {}
    for j in jobs:
        runs = j if ctx.dry else 2 * j
        out = Path(tempfile.mkdtemp(prefix=f"sweep-j{j}-", dir=ctx.out))
        argv = ["-m", "cil", "sweep", "--scenario", "synthetic-b50-1", "--strategy", "il-baseline-bsce"]
        argv += ["--seeds", ",".join(str(1993 + i) for i in range(runs)), "--jobs", str(j), "--out", str(out)]
        argv += ["--no-progress", "--logger", "none", "--device", ctx.device, *sizes]
        started = time.monotonic()
        ctx.run(phase, argv, max(1.0, budget - sum(r["seconds"] for r in rates.values())))
        seconds = time.monotonic() - started
        rates[j] = {"runs": runs, "seconds": seconds, "runs_per_hour": runs * 3600 / seconds}
        shutil.rmtree(out, ignore_errors=True)
    phase.details["jobs"] = rates
    phase.headline = ", ".join(f"--jobs {j}: {r['runs_per_hour']:,.0f} runs/h" for j, r in rates.items())


def input_pipeline(ctx: Context, phase: Phase) -> None:
    sizes = ["--classes", "4", "--per-class", "6", "--batch", "8", "--batches", "2", "--workers", "1"]
    if not ctx.dry:
        sizes = ["--classes", "20", "--per-class", "40", "--batch", "256", "--batches", "3", "--workers", "8"]
    output = ctx.run(
        phase,
        ["benchmarks/input_pipeline.py", "--device", ctx.device, *sizes, "--root", str(ctx.out / "jpegs")],
        ctx.share(phase.name),
    )
    rows = dict(re.findall(r"^\| (.+?) \| ([\d,]+) \|$", output, flags=re.M))
    phase.details["images_per_s"] = {k: int(v.replace(",", "")) for k, v in rows.items()}
    phase.headline = ", ".join(f"{k}: {v} img/s" for k, v in rows.items())
    shutil.rmtree(ctx.out / "jpegs", ignore_errors=True)


RUNNERS: dict[str, Callable[[Context, Phase], None]] = {
    "gpu-tests": gpu_tests,
    "training-speed": training_speed,
    "schedule": schedule,
    "sweep-throughput": sweep_throughput,
    "input-pipeline": input_pipeline,
}


# ------------------------------------------------------------------ set-up and the report


def install(bundle: Path, site: Path) -> dict[str, str]:
    """cil's wheel from the bundle into ``site``; the environment that imports it (and the bundle's packages)."""
    wheels = sorted((bundle / "wheels").glob("cil-*.whl"))
    if not wheels:
        sys.exit(f"gpu_evidence: no cil wheel in {bundle / 'wheels'}: run make device-bundle first")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    subprocess.run([*pip, "--target", str(site), str(wheels[-1])], check=True)
    paths = [str(site), str((bundle / "site").resolve())]
    return {"PYTHONPATH": os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def prepare_workspace(root: Path) -> Path:
    """tests/, benchmarks/ and pyproject.toml (pytest's settings) without the sources: imports find the install."""
    for name in ("tests", "benchmarks"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def write_report(out: Path, phases: list[Phase], header: dict) -> None:
    from_tmp = out / ".gpu_evidence.json.tmp"
    from_tmp.write_text(json.dumps({**header, "phases": [asdict(p) for p in phases]}, indent=1, default=str))
    os.replace(from_tmp, out / "gpu_evidence.json")


def table(phases: list[Phase], header: dict) -> str:
    lines = [
        f"gpu evidence: {header['device_name']}, torch {header['torch']}, cil {header['cil']} "
        f"({'dry run on the CPU' if header['dry_run'] else 'device run'}), {header['seconds']:.0f} s",
        "",
        "| phase | status | result | seconds |",
        "| --- | --- | --- | ---: |",
    ]
    lines += [f"| {p.name} | {p.status} | {p.headline} | {p.seconds:.0f} |" for p in phases]
    return "\n".join(lines)


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes as one line and exit 2, as cil's own commands (not argparse's three-line usage)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"gpu_evidence: error: {message}\n")


MAX_BUDGET_S = 7 * 24 * 3600.0
"""The longest --budget taken (a week); more is a typo."""


def checked_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The chosen phases, once every argument is known good; one error line otherwise (before anything is made)."""
    if not (math.isfinite(args.budget) and 0 < args.budget <= MAX_BUDGET_S):
        parser.error(f"--budget must be seconds in (0, {MAX_BUDGET_S:.0f}], got {args.budget}")
    chosen = [p for p in args.phases.split(",") if p]
    unknown = [p for p in chosen if p not in PHASES]
    if unknown or not chosen:
        parser.error(
            f"{f'unknown phase {unknown[0]!r}' if unknown else '--phases names no phase'}; valid: {', '.join(PHASES)}"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder")
    existing = next(p for p in [out.resolve(), *out.resolve().parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        parser.error(f"--out {out}: {existing} is not writable")
    return chosen


def main() -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-evidence", help="folder for gpu_evidence.json and the phases' logs")
    parser.add_argument("--bundle", help="the folder make device-bundle wrote (.devsite): install cil from it")
    parser.add_argument("--dry-run", action="store_true", help="the same sequence on the CPU at tiny sizes")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for all phases (default 540)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {', '.join(PHASES)}")
    parser.add_argument("--time-phases", help=argparse.SUPPRESS)  # the schedule phase's child process
    args = parser.parse_args()
    if args.time_phases:
        time_phases(Path(args.time_phases), args.dry_run)
        return 0
    chosen = checked_arguments(parser, args)
    started = time.monotonic()
    out = Path(args.out).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out {args.out}: cannot make it ({exc.strerror})")
    scratch = Path(tempfile.mkdtemp(prefix="cil-evidence-"))
    try:
        return run_phases(args, chosen, out, scratch, started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # a refused or failed run leaves no copy behind either


def run_phases(args: argparse.Namespace, chosen: list[str], out: Path, scratch: Path, started: float) -> int:
    """Install (from the bundle), describe the device, run the chosen phases; the report after every phase."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if args.bundle:
        env.update(install(Path(args.bundle).resolve(), scratch / "site"))
    ctx = Context(
        out=out,
        workspace=prepare_workspace(scratch / "workspace"),
        env=env,
        dry=args.dry_run,
        deadline=started + args.budget,
        device="cpu" if args.dry_run else "cuda",
    )
    header = describe(ctx)
    phases = [Phase(name) for name in PHASES if name in chosen]
    failed = False
    for phase in phases:
        print(f"[{phase.name}] {ctx.left():.0f} s left", flush=True)
        begun = time.monotonic()
        try:
            RUNNERS[phase.name](ctx, phase)
            phase.status = "ok"
        except PhaseTimeout as cut:
            phase.status, phase.headline = "time", phase.headline or str(cut)
        except PhaseFailed as error:
            phase.status, phase.headline = "failed", str(error)
            failed = True
        phase.seconds = time.monotonic() - begun
        header["seconds"] = time.monotonic() - started
        write_report(out, phases, header)  # a failed gpu test stops the tests, not the figures: the device is rare
    header["seconds"] = time.monotonic() - started
    write_report(out, phases, header)
    print(table(phases, header), flush=True)
    print(f"\nwritten: {out / 'gpu_evidence.json'}")
    return 1 if failed else 0


def describe(ctx: Context) -> dict:
    """What the evidence ran on: the device, torch, and the cil that was imported (the installed wheel's)."""
    probe = (
        "import json, torch, cil; print(json.dumps({'torch': torch.__version__, 'cil': cil.__version__, "
        "'cil_at': cil.__file__, 'device_name': torch.cuda.get_device_name() if torch.cuda.is_available() "
        "else 'cpu'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ctx.workspace, env=ctx.env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"gpu_evidence: cil does not import here: {done.stderr.strip().splitlines()[-1]}")
    found = json.loads(done.stdout)
    if ctx.device == "cuda" and found["device_name"] == "cpu":
        sys.exit("gpu_evidence: no CUDA device here (use --dry-run for the CPU)")
    return {**found, "dry_run": ctx.dry, "python": platform.python_version(), "seconds": 0.0}


if __name__ == "__main__":
    sys.exit(main())
