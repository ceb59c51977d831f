"""cil report over fixture run directories (tiny real runs), forgetting, sweeps, plots and TensorBoard logs."""

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cil.analysis.report import collect, summary_frame
from cil.cli import main
from cil.runs.assemble import build_config
from cil.runs.metrics import forgetting
from cil.runs.run import run
from tests.helpers import StopBeforeStep, quiet, tiny_api_options

FLAGS = {"epochs": 1, "device": "cpu", "progress": False, "data": {"limit_per_class": 10}}
SETS = ["model.backbone=tiny", "optim.batch_size=16", "data.synthetic_classes=10", "data.test_limit_per_class=5"]
SWEEP_TINY = [
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--no-progress",
    "--limit-per-class",
    "10",
    *sum((["--set", s] for s in SETS), []),
]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """il-baseline x 3 seeds, il-baseline-bsce x 2 seeds on synthetic-b6-2; one interrupted run."""
    root = tmp_path_factory.mktemp("runs")
    for strategy, seeds in [("il-baseline", [1, 2, 3]), ("il-baseline-bsce", [1, 2])]:
        for seed in seeds:
            cfg = build_config("synthetic-b6-2", strategy, {**FLAGS, "seed": seed}, SETS)
            run(cfg, out=root / strategy / f"seed{seed}", log=quiet)
    cfg = build_config("synthetic-b6-2", "il-baseline-bsce", {**FLAGS, "seed": 3}, SETS)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out=root / "il-baseline-bsce" / "seed3", extra_plugins=[StopBeforeStep(1)], log=quiet)
    return root


def aia_of(root: Path, strategy: str) -> list[float]:
    return [
        json.loads(p.read_text())["avg_incremental_accuracy"]
        for p in sorted((root / strategy).glob("seed*/results.json"))
        if json.loads(p.read_text())["status"] == "complete"
    ]


def test_forgetting_by_hand():
    history = [[80.0], [60.0, 90.0], [70.0, 50.0, 40.0]]
    # group 0: best before the last step 80, final 70 -> 10; group 1: best 90, final 50 -> 40
    assert forgetting(history) == pytest.approx(25.0)
    assert forgetting(history[:1]) is None


def test_summary_means_and_stds_over_complete_runs(runs_root):
    stats = summary_frame(collect([runs_root]), "avg_incremental_accuracy").set_index("row")
    for strategy, n in [("il-baseline", 3), ("il-baseline-bsce", 2)]:
        values = aia_of(runs_root, strategy)
        assert len(values) == n
        assert stats.at[strategy, "count"] == n
        assert stats.at[strategy, "mean"] == pytest.approx(np.mean(values))
        assert stats.at[strategy, "std"] == pytest.approx(np.std(values, ddof=1))


def test_exact_cells_from_edited_results(runs_root, tmp_path, capsys):
    """Three copies of one run with known AIAs 60, 62, 64: the cell reads 62.00 ± 2.00."""
    for i, value in enumerate([60.0, 62.0, 64.0]):
        target = tmp_path / f"seed{i}"
        shutil.copytree(runs_root / "il-baseline" / "seed1", target)
        results = json.loads((target / "results.json").read_text())
        results["avg_incremental_accuracy"], results["seed"] = value, i
        (target / "results.json").write_text(json.dumps(results))
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| il-baseline" in out and "62.00 ± 2.00" in out and "3 run(s) per cell" in out


def test_markdown_lists_the_incomplete_run(runs_root, capsys):
    assert main(["report", str(runs_root)]) == 0
    out = capsys.readouterr().out
    assert "synthetic-b6-2" in out.splitlines()[2]
    assert "Not averaged" in out and "seed3: interrupted, 1 of 3 steps" in out
    assert "(n=3)" in out and "(n=2)" in out  # unequal run counts are shown per cell


def test_csv_and_latex_parse(runs_root, capsys):
    assert main(["report", str(runs_root), "--format", "csv", "--metric", "all"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert {r["metric"] for r in rows} == {
        "avg_incremental_accuracy",
        "final_accuracy",
        "final_accuracy_base",
        "final_accuracy_new",
        "final_accuracy_few",  # a handful of images per class: every class few-shot, no many- or medium-shot row
        "avg_incremental_top5",
        "forgetting",
        "train_minutes",
    }
    aia = {r["strategy"]: r for r in rows if r["metric"] == "avg_incremental_accuracy"}
    assert aia["il-baseline"]["n"] == "3" and float(aia["il-baseline"]["mean"]) == pytest.approx(
        np.mean(aia_of(runs_root, "il-baseline")), abs=1e-4
    )
    assert "interrupted" in captured.err
    assert main(["report", str(runs_root), "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert tex.count("\\begin{tabular}") == 1 and tex.count("\\end{tabular}") == 1
    body = [line for line in tex.splitlines() if line.endswith("\\\\")]
    assert len(body) == 3 and all(line.count("&") == 1 for line in body)
    assert "$\\pm$" in tex and "% Not averaged" in tex


def test_per_step_table(runs_root, capsys):
    assert main(["report", str(runs_root), "--per-step"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| synthetic")]
    assert len(lines) == 6
    interrupted = next(line for line in lines if "interrupted" in line)
    assert interrupted.count(" - ") >= 2  # steps 1 and 2 were never run


def test_variants_become_rows(tmp_path, capsys):
    for memory in (2, 4):
        cfg = build_config("synthetic-b6-2", "il-baseline", {**FLAGS, "memory": {"per_class": memory}}, SETS)
        run(cfg, out=tmp_path / f"m{memory}", log=quiet)
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "il-baseline [memory.per_class=2]" in out and "il-baseline [memory.per_class=4]" in out


def test_a_plugin_option_labels_only_the_runs_that_have_the_plugin():
    from cil.analysis.report import Run, variant_labels

    def fake(name: str, strategy: str, plugins: dict) -> Run:
        return Run(Path(name), {"scenario": "s", "strategy": strategy, "config": {"plugins": plugins}})

    runs = [
        fake("a", "il-baseline", {}),
        fake("b", "il-baseline-gala", {"gala": {"rebalance": False}}),
        fake("c", "il-baseline-gala", {"gala": {"rebalance": True}}),
    ]
    assert variant_labels(runs) == {
        Path("a"): "",
        Path("b"): "plugins.gala.rebalance=False",
        Path("c"): "plugins.gala.rebalance=True",
    }


# ------------------------------------------------------------------------------------------------ sweeps


def test_sweep_runs_the_product_lists_invalid_and_skips_complete_runs(tmp_path, capsys):
    argv = [
        "sweep",
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        "il-baseline,il-baseline-meta-bsce",
        "--grid",
        "memory=1,2",
        "--seeds",
        "5",
        "--out",
        str(tmp_path),
        *SWEEP_TINY,
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "4 runs" in captured.err and "3 to run" in captured.err and "1 invalid" in captured.err
    assert "invalid  synthetic-b6-2 il-baseline-meta-bsce memory.per_class=1 seed 5" in captured.err
    done = sorted(p.parent.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("results.json"))
    assert done == [
        "synthetic-b6-2/il-baseline-meta-bsce/memory.per_class=2/seed5",
        "synthetic-b6-2/il-baseline/memory.per_class=1/seed5",
        "synthetic-b6-2/il-baseline/memory.per_class=2/seed5",
    ]
    cfg = json.loads((tmp_path / done[1] / "results.json").read_text())["config"]
    assert cfg["memory"]["per_class"] == 1 and cfg["seed"] == 5
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("results.json")}
    assert main(argv) == 0
    assert "0 to run, 0 to resume, 3 complete" in capsys.readouterr().err
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("results.json")}


def test_sweep_resumes_an_interrupted_run_and_refuses_a_changed_config(tmp_path, capsys):
    target = tmp_path / "synthetic-b6-2" / "il-baseline" / "seed1993"
    cfg = build_config("synthetic-b6-2", "il-baseline", FLAGS, SETS)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out=target, extra_plugins=[StopBeforeStep(2)], log=quiet)
    argv = ["sweep", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline", "--out", str(tmp_path), *SWEEP_TINY]
    assert main(argv + ["--dry-run"]) == 0
    assert "resume   synthetic-b6-2 il-baseline seed 1993: interrupted, 2 of 3 steps" in capsys.readouterr().err
    assert main(argv) == 0
    assert json.loads((target / "results.json").read_text())["status"] == "complete"
    capsys.readouterr()
    assert main(argv[: -len(SWEEP_TINY)] + ["--epochs", "2", *SWEEP_TINY[2:]]) == 2
    assert "differs in optim.epochs" in capsys.readouterr().err


def test_shipped_sweep_files_expand(capsys):
    assert main(["sweep", "table4-memory", "--dry-run", "--out", "/nonexistent/sweep"]) == 0
    err = capsys.readouterr().err
    # 3 losses x 5 memory sizes x 3 seeds, Meta BSCE with memory 1 refused (the '-' of Table 4)
    assert "45 runs" in err and "3 invalid" in err
    assert main(["sweep", "table5-alpha", "--dry-run", "--out", "/nonexistent/sweep"]) == 0
    assert "30 runs" in capsys.readouterr().err  # (4 alphas + Meta BSCE) x 2 scenarios x 3 seeds
    assert main(["sweep", "figure4-epsilon", "--dry-run", "--out", "/nonexistent/sweep"]) == 0
    assert "0 invalid" in capsys.readouterr().err
    assert main(["sweep", "table1-rivals", "--dry-run", "--out", "/nonexistent/sweep"]) == 0
    assert "63 runs" in (err := capsys.readouterr().err) and "0 invalid" in err  # 3 scenarios x 7 strategies x 3
    assert main(["sweep", "table2-imagenet", "--dry-run", "--out", "/nonexistent/sweep"]) == 0
    assert "5 runs" in (err := capsys.readouterr().err) and "0 invalid" in err


def test_a_strategy_with_an_added_plugin_is_its_own_row(tmp_path, capsys):
    argv = ["sweep", "--scenario", "synthetic-b6-2", "--seeds", "5", "--out", str(tmp_path), *SWEEP_TINY]
    assert main([*argv, "--strategy", "il-baseline,il-baseline+weight-aligning"]) == 0
    done = sorted(p.parent.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("results.json"))
    assert done == ["synthetic-b6-2/il-baseline+weight-aligning/seed5", "synthetic-b6-2/il-baseline/seed5"]
    capsys.readouterr()
    assert main([*argv, "--strategy", "il-baseline", "--plugin", "weight-aligning", "--dry-run"]) == 0
    assert "skip     synthetic-b6-2 il-baseline+weight-aligning seed 5: complete" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 0
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("| il")]
    assert rows == ["il-baseline", "il-baseline+weight-aligning"]


# ------------------------------------------------------------------------------------------------ plots


def png_pixels(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_plots_are_pngs_of_the_expected_size_and_not_blank(runs_root, tmp_path, capsys):
    one = runs_root / "il-baseline" / "seed1"
    assert main(["plot", str(one), "--kind", "all", "--step", "1", "--out", str(tmp_path)]) == 0
    written = capsys.readouterr().out.split()
    assert [Path(p).name for p in written] == [
        "confusion_step_01.png",
        "accuracy_curves.png",
        "accuracy_mean_over_seeds.png",
        "base_vs_new.png",
        "accuracy_matrix.png",
        "forgetting_per_step.png",
        "per_class_accuracy.png",
    ]
    sizes = {
        "confusion_step_01.png": (650, 750),
        "accuracy_curves.png": (500, 800),
        "base_vs_new.png": (500, 800),
        "accuracy_mean_over_seeds.png": (500, 800),
        "forgetting_per_step.png": (500, 800),
        "accuracy_matrix.png": (420, 525),
        "per_class_accuracy.png": (500, 800),
    }  # 3 steps: (0.6 n + 2.4, 0.75 n + 3) inches
    for path in map(Path, written):
        pixels = png_pixels(path)
        assert pixels.shape[:2] == sizes[path.name]
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # axes, text, data: not blank
    assert main(["plot", str(one)]) == 0
    assert {Path(p).name for p in capsys.readouterr().out.split()} == {"confusion_step_02.png", "base_vs_new.png"}
    assert (one / "plots" / "confusion_step_02.png").is_file()
    several = [str(runs_root / s / "seed1") for s in ("il-baseline", "il-baseline-bsce")]
    assert main(["plot", *several, "--out", str(tmp_path / "cmp")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "cmp" / "accuracy_curves.png")]
    assert main(["plot", *several, "--kind", "confusion", "--out", str(tmp_path / "cmp")]) == 0
    side_by_side = png_pixels(Path(capsys.readouterr().out.strip()))
    assert side_by_side.shape[:2] == (650, 1500)  # two panels side by side on one colour scale (a grid from 4 on)


def test_plot_step_out_of_range_is_one_line(runs_root, capsys):
    assert main(["plot", str(runs_root / "il-baseline" / "seed1"), "--step", "7"]) == 2
    assert "has steps 0 to 2" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ tensorboard


def test_tensorboard_logs_losses_accuracies_and_alpha(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = build_config("synthetic-b6-2", "il-baseline-meta-bsce", {**FLAGS, "epochs": 2}, SETS)
    run(cfg, out=tmp_path / "r", log=quiet)
    epochs = EventAccumulator(str(tmp_path / "r" / "tensorboard" / "epochs")).Reload()
    steps = EventAccumulator(str(tmp_path / "r" / "tensorboard" / "steps")).Reload()
    tags = set(epochs.Tags()["scalars"])
    assert {
        "train/loss/classification",
        "train/loss/distillation",
        "train/loss/total",
        "train/lr",
        "train/learned/alpha",
    } <= tags
    assert [e.step for e in epochs.Scalars("train/loss/total")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in epochs.Scalars("train/learned/alpha")] == [3, 4, 5, 6]  # incremental steps only
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    accuracy = [e.value for e in steps.Scalars("test/accuracy")]
    assert accuracy == pytest.approx([s["accuracy"] for s in results["steps"]], abs=1e-4)
    assert {"test/accuracy_base", "test/accuracy_new", "test/forgetting", "step/memory_size", "step/alpha"} <= set(
        steps.Tags()["scalars"]
    )


def test_no_tensorboard(tmp_path):
    cfg = build_config("synthetic-b6-2", "il-baseline", {**FLAGS, "logging": {"loggers": []}}, SETS)
    run(cfg, out=tmp_path / "r", log=quiet)
    assert not (tmp_path / "r" / "tensorboard").exists()


def test_step_figures_agree_with_the_results(tmp_path):
    """accuracy-matrix, forgetting and mean-curves read accuracy_per_group and the seeds as the report does."""
    import numpy as np
    from matplotlib.figure import Figure

    from cil import api
    from cil.analysis.plots import plot_runs
    from cil.analysis.plots_steps import forgetting_per_step, group_matrix
    from cil.analysis.report import collect

    common = tiny_api_options(**{"optim.batch_size": 8, "data.test_limit_per_class": 3})
    api.run_seeds("synthetic-b4-3", "il-baseline", [1, 2], out=tmp_path / "runs", **common)
    runs = collect([tmp_path / "runs"])
    matrix = group_matrix(runs[0])
    steps = runs[0].results["steps"]
    assert matrix.shape == (4, 4) and np.isnan(matrix[0, 1]) and matrix[3, 0] == steps[3]["accuracy_per_group"][0]
    per_step = forgetting_per_step(runs[0])
    assert per_step[0] is None and per_step[-1] == pytest.approx(runs[0].results["forgetting"])
    paths = plot_runs([tmp_path / "runs"], kind="all", out=tmp_path / "figs")
    names = sorted(p.name for p in paths)
    assert {"accuracy_mean_over_seeds.png", "forgetting_per_step.png", "accuracy_curves.png"} <= set(names)
    assert all(p.stat().st_size > 5000 for p in paths)
    assert isinstance(api.mean_curves_figure([tmp_path / "runs" / "seed1", tmp_path / "runs" / "seed2"]), Figure)


def test_report_lists_damaged_results_instead_of_crashing(runs_root, tmp_path, capsys):
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(runs_root / "il-baseline" / "seed1", tree / "good")
    for name, text in [("list", "[]"), ("null", "null"), ("broken", "{not json")]:
        (tree / name).mkdir()
        (tree / name / "results.json").write_text(text)
    odd = json.loads((tree / "good" / "results.json").read_text())
    (tree / "odd").mkdir()
    (tree / "odd" / "results.json").write_text(json.dumps({**odd, "strategy": "+nme"}))  # issue 35 item 14
    assert main(["report", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "| il-baseline" in out
    assert f"{tree / 'odd'}: unreadable (" in out
    assert f"{tree / 'list'}: unreadable (the file must be a JSON object, got a list)" in out
    assert f"{tree / 'null'}: unreadable (the file must be a JSON object, got null)" in out
    assert f"{tree / 'broken'}: unreadable (" in out


def test_a_grid_sweeps_rows_and_figures_tell_its_variants_apart(runs_root, tmp_path, capsys):
    """A --grid memory=2,4 sweep of two strategies, two seeds each (made by relabelling the fixture's runs):
    every report row is labelled by the same grid key; `cil plot` on the folder averages the seeds into one
    line per variant, names the variant in the legend, ticks on whole class counts, and writes beside the
    runs, not into the current folder."""
    sweep = tmp_path / "sweep"
    for strategy in ("il-baseline", "il-baseline-bsce"):
        for memory in (2, 4):
            for seed in (1, 2):
                run_dir = sweep / strategy / f"memory={memory}" / f"seed{seed}"
                shutil.copytree(runs_root / strategy / f"seed{seed}", run_dir)
                results = json.loads((run_dir / "results.json").read_text())
                results["config"]["memory"]["per_class"] = memory
                (run_dir / "results.json").write_text(json.dumps(results))
    assert main(["report", str(sweep)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "il-baseline" in line]
    assert len(rows) == 4 and all("[memory.per_class=" in row for row in rows), rows

    from cil.analysis.plots import curves_figure
    from cil.analysis.plots_steps import mean_curves_figure

    runs = collect([sweep])
    mean_figure = mean_curves_figure(runs)
    legend = [t.get_text() for t in mean_figure.legends[0].get_texts()]
    assert len(legend) == 4 and all("[memory.per_class=" in t and "(n=" not in t for t in legend), legend
    assert "mean over 2 seeds" in mean_figure.axes[0].get_title()  # said once, not "(n=2)" in every entry
    # paper-ready (issue 35 item 4): the legend below the axes, not over the data; entries ranked by their
    # average incremental accuracy; the accuracy axis fitted to the data
    aia = [float(t.split("avg inc. acc. ")[1].split()[0]) for t in legend]
    assert aia == sorted(aia, reverse=True)
    figure = curves_figure(runs)
    axes = figure.axes[0]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    assert axes.get_legend() is None and len(figure.legends) == 1
    assert figure.legends[0].get_window_extent(renderer).y1 <= axes.get_window_extent(renderer).y0  # below the axes
    accuracies = [s["accuracy"] for r in runs for s in r.results["steps"]]
    low, high = axes.get_ylim()
    assert 0 <= low <= min(accuracies) - 5 and max(accuracies) + 5 <= high <= 100 and (low, high) != (0, 100)
    assert all(float(t).is_integer() for t in axes.get_xticks())
    assert figure.legends[0].get_texts()[0].get_fontsize() >= 9

    monkey_cwd = tmp_path / "elsewhere"
    monkey_cwd.mkdir()
    import os

    here = os.getcwd()
    os.chdir(monkey_cwd)
    try:
        assert main(["plot", str(sweep)]) == 0
    finally:
        os.chdir(here)
    written = capsys.readouterr().out.split()
    assert written == [str(sweep.resolve() / "plots" / "accuracy_mean_over_seeds.png")]
    assert not list(monkey_cwd.iterdir())
    one = mean_curves_figure([runs[0]]).axes[0].get_title()
    assert "band" not in one  # one run: no band, and the title does not promise one


def test_plot_draws_the_good_runs_and_names_the_damaged_ones(runs_root, tmp_path, capsys):
    """Issue 35 item 14: one results.json with an odd strategy label ('+nme') made `cil plot DIR` exit 2."""
    tree = tmp_path / "tree"
    for seed in ("seed1", "seed2"):
        shutil.copytree(runs_root / "il-baseline" / seed, tree / seed)
    odd = json.loads((tree / "seed1" / "results.json").read_text())
    (tree / "odd").mkdir()
    (tree / "odd" / "results.json").write_text(json.dumps({**odd, "strategy": "+nme"}))
    assert main(["plot", str(tree), "--kind", "curves", "--out", str(tmp_path / "figs")]) == 0
    err = capsys.readouterr().err
    assert f"cil: skipped {tree / 'odd'}: results.json is unreadable (" in err
    assert (tmp_path / "figs" / "accuracy_curves.png").is_file()


def test_report_ranks_rows_and_puts_metrics_side_by_side_for_one_scenario(runs_root, capsys):
    """Issue 35 item 5: rows only alphabetical, no wall time, '--metric all' six tables."""
    assert main(["report", str(runs_root), "--metric", "final_accuracy,train_minutes", "--sort", "final_accuracy"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [c.strip() for c in lines[0].split("|")[1:4]] == ["strategy", "final_accuracy", "train_minutes"]
    rows = [[c.strip() for c in line.split("|")[1:4]] for line in lines[2:]]
    means = [float(r[1].split(" ")[0]) for r in rows]
    assert means == sorted(means, reverse=True) and len(rows) == 2
    for strategy, _, shown in rows:  # minutes of training, the mean over seeds of the steps' train_seconds summed
        results = [json.loads(f.read_text()) for f in sorted((runs_root / strategy).glob("*/results.json"))]
        minutes = [sum(s["train_seconds"] for s in r["steps"]) / 60 for r in results if r["status"] == "complete"]
        assert abs(float(shown.split(" ")[0]) - sum(minutes) / len(minutes)) <= 0.005 + 1e-9
    from cil import api

    by_time = api.report([runs_root], "train_minutes", sort="train_minutes")
    minutes = [float(line.split("|")[2].split()[0]) for line in by_time.splitlines() if line.startswith("| il")]
    assert minutes == sorted(minutes)


def test_a_sweep_sets_a_plugins_key_for_the_strategies_that_have_it(tmp_path, capsys):
    """Issue 35 item 1: '--set plugins.balanced-finetuning.epochs=4' over il-baseline and eeil was refused for
    il-baseline; now it tunes eeil alone, and a plugin no strategy of the sweep has is refused naming one."""
    argv = ["sweep", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline,eeil", "--dry-run"]
    assert main([*argv, "--set", "plugins.balanced-finetuning.epochs=4", "--out", str(tmp_path)]) == 0
    assert "2 to run, 0 to resume, 0 complete, 0 invalid" in capsys.readouterr().err
    from cil.sweeps.plan import SweepBlock, SweepPlan

    plan = SweepPlan("x", [SweepBlock(["s"], ["il-baseline", "eeil"])], [1], ["plugins.balanced-finetuning.epochs=4"])
    assert plan.sets_for("il-baseline") == [] and plan.sets_for("eeil") == ["plugins.balanced-finetuning.epochs=4"]
    bad = [
        "sweep",
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        "il-baseline,bic",
        "--dry-run",
        "--out",
        str(tmp_path),
    ]
    assert main([*bad, "--set", "plugins.balanced-finetuning.epochs=4"]) == 2
    assert "unknown key 'plugins.balanced-finetuning': strategy il-baseline has plugins []" in capsys.readouterr().err


def test_plot_out_holds_every_figure_of_several_runs(runs_root, tmp_path, capsys):
    """Issue 35 item 4: `cil plot RUN RUN --out DIR` wrote the one-run figures into each run's plots/."""
    several = [str(runs_root / s / "seed1") for s in ("il-baseline", "il-baseline-bsce")]
    assert main(["plot", *several, "--kind", "base-new", "--out", str(tmp_path / "figs")]) == 0
    written = [Path(p) for p in capsys.readouterr().out.split()]
    assert len(written) == 2 and all(p.parent == tmp_path / "figs" and p.is_file() for p in written)
    assert written[0].name != written[1].name and all(p.name.startswith("base_vs_new_il-baseline") for p in written)


def test_runs_of_the_first_results_layout_read_as_their_successors(runs_root, tmp_path, capsys):
    """Issue 35 item 14: runtime.precision / channels_last saved as null by the first layout split a report
    into two rows, and its accuracy-matrix plot was an empty heatmap with exit 0."""
    from cil.analysis.report import Run, variant_labels

    def fake(name: str, runtime: dict) -> Run:
        return Run(Path(name), {"scenario": "s", "strategy": "il-baseline", "config": {"runtime": runtime}})

    runs = [
        fake("old", {"precision": None, "channels_last": None}),
        fake("new", {"precision": "auto", "channels_last": "auto"}),
    ]
    assert variant_labels(runs) == {Path("old"): "", Path("new"): ""}
    old = tmp_path / "old"
    shutil.copytree(runs_root / "il-baseline" / "seed1", old)
    results = json.loads((old / "results.json").read_text())
    for step in results["steps"]:
        step.pop("accuracy_per_group", None)
    (old / "results.json").write_text(json.dumps(results))
    assert main(["plot", str(old), "--kind", "accuracy-matrix"]) == 2
    assert "records no accuracy per step's classes" in capsys.readouterr().err
