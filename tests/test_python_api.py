"""cil.api: the example of docs/python-api.md runs as written; overrides behave like --set."""

import re
from pathlib import Path

import pytest

from cil import api
from cil.errors import UserError
from tests.helpers import tiny_api_options

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def test_the_documented_example_runs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    code = code.replace('root = Path("runs/notebook")', f"root = Path({str(tmp_path / 'nb')!r})")
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    assert (tmp_path / "nb" / "bsce" / "results.json").exists()
    assert (tmp_path / "nb" / "confusion.png").stat().st_size > 1000
    assert namespace["results"]["run_dir"] == str(tmp_path / "nb" / "bsce")


def test_overrides_are_the_set_options_as_a_dict():
    nested = api.experiment_config(
        "synthetic-b6-2", "il-baseline-bsce", overrides={"optim": {"lr": 0.05}, "loss": {"name": "bsce", "alpha": 0.5}}
    )
    dotted = api.experiment_config(
        "synthetic-b6-2", "il-baseline-bsce", overrides={"optim.lr": 0.05, "loss.alpha": 0.5}
    )
    assert nested.to_dict() == dotted.to_dict()
    assert nested.optim.lr == 0.05 and nested.loss.alpha == 0.5
    switched = api.experiment_config(
        "synthetic-b6-2", "il-baseline", overrides={"loss": {"alpha": 2.0, "name": "bsce"}}
    )
    assert switched.loss.name == "bsce" and switched.loss.alpha == 2.0  # the name is applied first
    cfg = api.experiment_config("synthetic-b6-2", "il-baseline-bsce", memory=3, epochs=4, plugins=["nme"])
    assert cfg.memory.per_class == 3 and cfg.optim.epochs == 4 and [p.name for p in cfg.plugins] == ["nme"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"optim.lrr": 0.1}, "unknown key 'optim.lrr' (did you mean 'lr'?)"),
        ({"optim": {"lr": -1}}, "invalid value for 'optim.lr': must be > 0"),
        ({"": 1}, "keys must be non-empty strings"),
    ],
)
def test_mistakes_are_the_command_lines_one_line(overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        api.experiment_config("synthetic-b6-2", "il-baseline-bsce", overrides=overrides)


def test_figures_and_tables_from_run_directories(tmp_path):
    common = tiny_api_options(**{"optim.batch_size": 8})
    runs = api.run_seeds("synthetic-b6-2", "il-baseline", [1, 2], out=tmp_path / "s", **common)
    assert [r["seed"] for r in runs] == [1, 2]
    table = api.summary([tmp_path / "s"])
    assert table.loc[0, "count"] == 2 and table.loc[0, "seeds"] == "1 2"
    from matplotlib.figure import Figure

    for fig in (
        api.curves_figure([r["run_dir"] for r in runs]),
        api.base_new_figure(tmp_path / "s" / "seed1"),
        api.confusion_figure(runs, step=0),
    ):
        assert isinstance(fig, Figure) and fig.axes
    with pytest.raises(UserError, match="unknown metric"):
        api.summary([tmp_path / "s"], metric="acc")


def test_every_figure_shows_in_an_executed_notebook(tmp_path):
    """A notebook executed headless (nbclient, a real IPython kernel, no %matplotlib magic): each of the six
    figure functions, as a plain last expression and through display(), gives an image/png output."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    run_dir = tmp_path / "run"
    api.run_experiment(
        "synthetic-b6-2",
        "il-baseline",
        out=run_dir,
        **tiny_api_options(),
    )
    figures = [
        "api.confusion_figure(RUN)",
        "api.curves_figure(RUN)",
        "api.base_new_figure(RUN)",
        "api.mean_curves_figure([RUN])",
        "api.accuracy_matrix_figure(RUN)",
        "api.forgetting_figure(RUN)",
    ]
    cells = [nbformat.v4.new_code_cell(f"from cil import api\nRUN = {str(run_dir)!r}")]
    cells += [nbformat.v4.new_code_cell(call) for call in figures]
    cells += [nbformat.v4.new_code_cell(f"display({figures[0]})")]
    training = (
        f"r = api.run_experiment('synthetic-b6-2', 'il-baseline', out={str(tmp_path / 'nb')!r}, epochs=8, "
        "limit_per_class=6, memory=2, loggers=(), overrides={'model.backbone': 'tiny', "
        "'data.synthetic_classes': 10, 'data.test_limit_per_class': 2})"
    )
    notebook = nbformat.v4.new_notebook(cells=[*cells, nbformat.v4.new_code_cell(training)])
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    for cell in notebook.cells[1:-1]:
        kinds = {kind for output in cell.outputs for kind in output.get("data", {})}
        assert "image/png" in kinds, (cell.source, cell.outputs)
    # progress without ipywidgets: lines per epoch and step, not one output per bar refresh; no import noise
    text = "".join(output.get("text", "") for output in notebook.cells[-1].outputs)
    assert len(notebook.cells[-1].outputs) <= 8 and "\r" not in text, notebook.cells[-1].outputs
    assert text.count("epoch") >= 8 * 3 and "Warning" not in text, text


@pytest.mark.parametrize(
    "options, message",
    [
        ({"no_progress": True}, "'no_progress' is not an argument of cil.api: write progress=False"),
        ({"set": {"optim.lr": 0.1}}, "write overrides={...}"),
        ({"logger": "csv"}, "write loggers=[...]"),
        ({"seeds": [1, 2]}, "write run_seeds(scenario, strategy, seeds, out=...)"),
        ({"epoch": 3}, "unknown argument 'epoch' (did you mean 'epochs'?)"),
    ],
)
def test_other_spellings_are_one_clear_error(options, message):
    for call in (api.experiment_config, api.run_experiment):
        with pytest.raises(UserError, match=re.escape(message)):
            call("synthetic-b6-2", "il-baseline", **options)


def test_a_single_string_is_one_item(tmp_path):
    cfg = api.experiment_config("synthetic-b6-2", "il-baseline", loggers="csv", plugins="nme")
    assert cfg.logging.loggers == ["csv"] and cfg.plugins[-1].name == "nme"
    with pytest.raises(UserError, match=f"no results.json found under {tmp_path}$"):  # a folder, not characters
        api.collect_runs(str(tmp_path))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"scenario": 5}, "scenario must be a scenario name such as 'cifar100-b50-5', got 5"),
        ({"strategy": None}, "strategy must be a strategy name or a strategy file's path, got None"),
        ({"strategy": ["il-baseline"]}, "strategy must be a strategy name"),
        ({"epochs": "3"}, "epochs must be an integer, got '3'"),
        ({"epochs": 3.5}, "epochs must be an integer, got 3.5"),
        ({"memory": True}, "memory must be an integer"),
        ({"overrides": ["optim.lr=0.05"]}, "overrides must be a dict of config keys"),
        ({"plugins": [{"name": "nme"}]}, "plugins must be a list of plugin names"),
        ({"progress": "no"}, "progress must be True or False, got 'no'"),
        ({"memory": 2, "memory_budget": 100}, "give memory (per class) or memory_budget (in all), not both"),
    ],
)
def test_every_api_argument_is_checked_with_one_line(arguments, message):
    """Issue 35 item 13: these were tracebacks from deep inside, or silently accepted."""
    call = {"scenario": "synthetic-b6-2", "strategy": "il-baseline", **arguments}
    with pytest.raises(UserError) as caught:
        api.experiment_config(**call)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "seeds, message",
    [([], "non-empty list of integers"), ("12", "list of integers, got '12'"), ([1, 1], "distinct"), ([1.5], "")],
)
def test_run_seeds_checks_its_seeds_before_any_run(tmp_path, seeds, message):
    with pytest.raises(UserError, match="seeds must be") as caught:
        api.run_seeds("synthetic-b6-2", "il-baseline", seeds, out=tmp_path / "s")
    assert message in str(caught.value) and not (tmp_path / "s").exists()


def test_run_experiment_checks_its_own_arguments(tmp_path):
    with pytest.raises(UserError, match="log must be a function taking one line of text, got 'x'"):
        api.run_experiment("synthetic-b6-2", "il-baseline", out=tmp_path / "r", log="x")
    assert not (tmp_path / "r").exists()
