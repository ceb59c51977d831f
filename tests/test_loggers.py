"""--logger tensorboard,csv,wandb: each writes what it promises, read back; resumed runs log no duplicates."""

import json
from pathlib import Path

import pandas as pd
import pytest

from cil.cli import main
from cil.errors import UserError
from cil.runs.assemble import build_config
from cil.runs.run import run
from tests.helpers import StopBeforeStep, quiet, wandb_records

FLAGS = {"epochs": 2, "device": "cpu", "progress": False, "data": {"limit_per_class": 10}}
SETS = [
    "model.backbone=tiny",
    "optim.batch_size=16",
    "data.synthetic_classes=10",
    "data.test_limit_per_class=5",
    "logging.wandb_mode=offline",
]


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("loggers") / "r"
    cfg = build_config(
        "synthetic-b6-2",
        "il-baseline-meta-bsce",
        {**FLAGS, "logging": {"loggers": ["tensorboard", "csv", "wandb"]}},
        SETS,
    )
    return out, run(cfg, out=out, log=quiet)


def test_csv_logs_every_epoch_and_step(logged):
    out, results = logged
    epochs = pd.read_csv(out / "logs" / "epochs.csv")
    assert list(epochs.columns) == ["epoch", "step", "metric", "value"]
    total = epochs[epochs.metric == "train/loss/total"]
    assert total.epoch.tolist() == [1, 2, 3, 4, 5, 6] and total.step.tolist() == [0, 0, 1, 1, 2, 2]
    assert total.value.tolist()[-1] == pytest.approx(sum(results["steps"][-1]["final_epoch_loss"].values()), rel=1e-5)
    assert epochs[epochs.metric == "train/learned/alpha"].epoch.tolist() == [3, 4, 5, 6]
    steps = pd.read_csv(out / "logs" / "steps.csv").pivot_table(index="step", columns="metric", values="value")
    assert steps["test/accuracy"].tolist() == pytest.approx([s["accuracy"] for s in results["steps"]])
    assert steps["test/avg_incremental_accuracy"].iloc[-1] == pytest.approx(results["avg_incremental_accuracy"])
    assert {"test/accuracy_base", "test/forgetting", "step/memory_size"} <= set(steps.columns)


def test_tensorboard_hparams_hold_the_config_and_the_run_numbers(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out, results = logged
    events = EventAccumulator(str(out / "tensorboard" / "hparams")).Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["optim.lr"].number_value == pytest.approx(results["config"]["optim"]["lr"])
    assert start.hparams["loss.name"].string_value == "meta-bsce"
    assert start.hparams["status"].string_value == "complete"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {
        "avg_incremental_accuracy",
        "final_accuracy",
        "forgetting",
    }
    assert events.Scalars("avg_incremental_accuracy")[0].value == pytest.approx(
        results["avg_incremental_accuracy"], abs=1e-4
    )
    steps = EventAccumulator(str(out / "tensorboard" / "steps")).Reload()
    assert [e.value for e in steps.Scalars("test/avg_incremental_accuracy")][-1] == pytest.approx(
        results["avg_incremental_accuracy"], abs=1e-4
    )


def test_wandb_offline_run_holds_config_history_and_summary(logged):
    out, results = logged
    records = wandb_records(out)
    run_record = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run_record.display_name == "synthetic-b6-2/il-baseline-meta-bsce/seed1993"
    assert run_record.project == "cil"
    config = {u.key: json.loads(u.value_json) for u in run_record.config.update}
    assert config["optim.lr"] == results["config"]["optim"]["lr"] and config["loss.name"] == "meta-bsce"
    # hyperparameters only: not where or how the run executed
    assert not [k for k in config if k in ("out", "device", "progress", "data.root") or k.startswith("logging.")]
    assert run_record.run_group == "synthetic-b6-2/il-baseline-meta-bsce" and run_record.job_type == "train"
    history = [
        {i.nested_key[0] if i.nested_key else i.key: json.loads(i.value_json) for i in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    tested = [h for h in history if "cil_step" in h]
    assert [h["test/accuracy"] for h in tested] == pytest.approx([s["accuracy"] for s in results["steps"]])
    assert "step/n_train" in tested[0] and not [k for h in tested for k in h if k.startswith("test/step/")]
    trained = [h for h in history if "epoch" in h]
    assert [h["epoch"] for h in trained] == [1, 2, 3, 4, 5, 6] and "train/learned/alpha" in trained[-1]
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update(
                {(u.nested_key[0] if u.nested_key else u.key): json.loads(u.value_json) for u in r.summary.update}
            )
    assert (
        summary["avg_incremental_accuracy"] == pytest.approx(results["avg_incremental_accuracy"])
        and summary["status"] == "complete"
    )
    assert (out / "logs" / "wandb-id").read_text().strip() == run_record.run_id


def test_a_resumed_run_logs_each_epoch_and_step_once(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def config():
        return build_config(
            "synthetic-b6-2", "il-baseline-bsce", {**FLAGS, "logging": {"loggers": ["tensorboard", "csv"]}}, SETS
        )

    with pytest.raises(KeyboardInterrupt):
        run(config(), out=tmp_path / "r", extra_plugins=[StopBeforeStep(2, after_epochs=1)], log=quiet)
    results = run(config(), out=tmp_path / "r", resume=True, log=quiet)
    epochs = pd.read_csv(tmp_path / "r" / "logs" / "epochs.csv")
    assert epochs[epochs.metric == "train/loss/total"].epoch.tolist() == [1, 2, 3, 4, 5, 6]
    steps = pd.read_csv(tmp_path / "r" / "logs" / "steps.csv")
    assert steps[steps.metric == "test/accuracy"].step.tolist() == [0, 1, 2]
    tb = EventAccumulator(str(tmp_path / "r" / "tensorboard" / "epochs")).Reload()
    assert [e.step for e in tb.Scalars("train/loss/total")] == [1, 2, 3, 4, 5, 6]
    assert results["status"] == "complete"


def test_logger_option_is_checked_in_one_line(capsys):
    assert main(["run", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline", "--logger", "tb"]) == 2
    assert capsys.readouterr().err.strip() == (
        "cil: error: --logger: unknown logger 'tb'; valid: csv, tensorboard, wandb, comma-separated, or none"
    )
    assert main(["run", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline", "--logger", "csv,csv"]) == 2
    assert "names a logger twice" in capsys.readouterr().err
    cfg = build_config("synthetic-b6-2", "il-baseline", {}, ["logging.loggers=csv,wandb"])
    assert cfg.logging.loggers == ["csv", "wandb"]


def test_saved_tensorboard_switch_of_older_runs_resumes_as_loggers():
    from cil import registry
    from cil.config import resume_config

    saved = build_config("synthetic-b6-2", "il-baseline", {}, []).to_dict()
    del saved["logging"]
    saved["tensorboard"] = False
    cfg = resume_config(saved, flags={}, sets=[], lookup=registry.config_class)
    assert cfg.logging.loggers == []


def test_wandb_online_without_a_login_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no wandb settings
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    code = main(
        [
            "run",
            "--scenario",
            "synthetic-b6-2",
            "--strategy",
            "il-baseline",
            "--epochs",
            "1",
            "--limit-per-class",
            "4",
            "--no-progress",
            "--logger",
            "wandb",
            "--set",
            "model.backbone=tiny",
            "--set",
            "data.synthetic_classes=10",
            "--set",
            "logging.wandb_mode=online",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err  # before any data loads: no "loaded in" line
    assert err[0].startswith("cil: error: wandb logger: no W&B API key") and "wandb_mode=offline" in err[0]
    assert not (tmp_path / "r").exists()  # and before the run directory is made


def test_wandb_check_accepts_a_key_a_netrc_login_or_offline(tmp_path, monkeypatch):
    from cil.runs.loggers.wandb_log import WandbLogger

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserError, match="no W&B API key for api.wandb.ai"):
        WandbLogger.check({"wandb_mode": "auto"})
    WandbLogger.check({"wandb_mode": "offline"})
    monkeypatch.setenv("WANDB_MODE", "offline")
    WandbLogger.check({"wandb_mode": "auto"})
    with pytest.raises(UserError):
        WandbLogger.check({"wandb_mode": "online"})
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / ".netrc").chmod(0o600)
    WandbLogger.check({"wandb_mode": "online"})
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    with pytest.raises(UserError, match="for wandb.example.org"):
        WandbLogger.check({"wandb_mode": "online"})
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    WandbLogger.check({"wandb_mode": "online"})


def test_the_logged_learning_rate_is_the_one_each_epoch_trained_with(tmp_path):
    """lr 0.1, decays x0.1 after epochs 1 and 2: the three epochs of every step trained at 0.1, 0.01, 0.001 and
    that is what every logger records (the scheduler steps after the epoch's values are taken)."""
    cfg = build_config(
        "synthetic-b6-2",
        "il-baseline",
        {**FLAGS, "epochs": 3, "data": {"limit_per_class": 6}, "logging": {"loggers": ["csv"]}},
        [*SETS[:4], "optim.lr=0.1", "optim.milestones=[1,2]", "optim.gamma=0.1", "optim.schedule=multistep"],
    )
    run(cfg, out=tmp_path / "r", log=quiet)
    epochs = pd.read_csv(tmp_path / "r" / "logs" / "epochs.csv")
    lr = epochs[epochs.metric == "train/lr"].sort_values("epoch")
    assert list(lr.epoch) == list(range(1, 10))  # 3 steps x 3 epochs, counted over the run
    assert lr.value.tolist() == pytest.approx([0.1, 0.01, 0.001] * 3)


def test_hyperparameters_are_what_the_run_computes_with_one_type_per_key():
    from cil.runs.loggers.scalars import hyperparameters

    cfg = build_config("synthetic-b6-2", "il-baseline", {**FLAGS, "memory": {"budget": 20}}, SETS)
    params = hyperparameters(cfg.to_dict())
    assert params["memory.budget"] == 20 and "memory.per_class" not in params  # the memory the run used
    assert not [k for k in params if k in ("out", "device", "progress", "data.root") or k.startswith("logging.")]
    assert "none" not in params.values() and all(isinstance(v, (bool, int, float, str)) for v in params.values())
    assert "memory.per_class" in hyperparameters(build_config("synthetic-b6-2", "il-baseline", FLAGS, SETS).to_dict())


def test_one_vocabulary_on_every_surface(logged):
    """A number has its results.json name in every logger, frame and report (loggers add a section prefix)."""
    from cil import api
    from cil.analysis.report import METRICS
    from cil.runs.loggers.scalars import ACCURACY_KEYS, SUMMARY_KEYS

    out, results = logged
    step_keys, run_keys = set(results["steps"][-1]), set(results)
    assert set(ACCURACY_KEYS) <= step_keys and set(SUMMARY_KEYS) <= run_keys
    csv_names = set(pd.read_csv(out / "logs" / "steps.csv").metric)
    tested = {name.removeprefix("test/") for name in csv_names if name.startswith("test/")}
    recorded = {key for step in results["steps"] for key in ACCURACY_KEYS if step[key] is not None}
    assert recorded >= {"accuracy", "accuracy_old"}
    assert len(recorded & {"accuracy_many", "accuracy_few"}) == 1  # balanced data: one shot group
    assert tested == recorded | {"avg_incremental_accuracy", "forgetting"}
    assert {name.removeprefix("step/") for name in csv_names if name.startswith("step/")} <= step_keys
    assert csv_names == {n for n in csv_names if n.startswith(("test/", "step/"))}
    assert set(ACCURACY_KEYS) <= set(api.steps_frame(out).columns)
    runs = api.collect_runs(out)
    assert set(METRICS) <= set(runs.columns) and set(SUMMARY_KEYS) <= set(METRICS)
    for key in SUMMARY_KEYS:
        assert runs[key].iloc[0] == pytest.approx(results[key])
    assert api.summary(out, metric="final_accuracy")["mean"].iloc[0] == pytest.approx(results["final_accuracy"])
    with pytest.raises(UserError, match="metric 'final' is now called 'final_accuracy'"):
        api.summary(out, metric="final")


def test_the_uncorrected_classifier_is_logged_as_a_test_metric():
    """Issue 35 item 2: one naming for corrected and uncorrected accuracies on every surface."""
    from cil.runs.loggers.scalars import step_scalars

    record = {"step": 1, "accuracy": 40.0, "classifier_accuracy": 35.0, "classifier_top5": 70.0, "n_train": 9}
    values = step_scalars(record, {})
    assert values["test/classifier_accuracy"] == 35.0 and values["test/classifier_top5"] == 70.0
    assert "step/classifier_accuracy" not in values and values["step/n_train"] == 9.0
