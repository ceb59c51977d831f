"""Tiny real runs through the CLI and the runner: results contract, memory, bookkeeping."""

import json
from pathlib import Path

import pytest
import torch

from cil.cli import main
from cil.cli.commands import run_config_from_args
from cil.cli.parser import build_parser
from cil.runs.run import run
from cil.training.contract import CilPlugin
from tests.helpers import check_results_contract, tiny_set_args

TINY = [
    "--epochs",
    "1",
    "--no-progress",
    "--set",
    "model.backbone=tiny",
    "--set",
    "optim.batch_size=16",
    "--set",
    "data.synthetic_classes=10",
    "--set",
    "data.test_limit_per_class=5",
]


def cli_run(tmp_path: Path, capsys, *extra: str, name="run") -> tuple[dict, Path, str]:
    out = tmp_path / name
    code = main(["run", "--out", str(out), *extra])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    return json.loads((out / "results.json").read_text()), out, stdout


def test_synthetic_il_baseline_bsce(tmp_path, capsys):
    results, out, stdout = cli_run(
        tmp_path,
        capsys,
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        "il-baseline-bsce",
        "--limit-per-class",
        "12",
        "--memory",
        "4",
        *TINY,
    )
    check_results_contract(results, out, n_steps=3)
    assert results["strategy"] == "il-baseline-bsce" and results["config"]["loss"]["name"] == "bsce"
    assert [s["n_train"] for s in results["steps"]] == [6 * 12, 2 * 12 + 6 * 4, 2 * 12 + 8 * 4]
    assert [s["memory_size"] for s in results["steps"]] == [24, 32, 40]
    assert [s.get("rho", 0.0) for s in results["steps"]] == [0.0, 6 / 8, 8 / 10]
    assert results["steps"][0]["classes"] == results["class_order"][:6]
    assert "average incremental accuracy" in stdout and "step" in stdout.splitlines()[0]


def test_image_folder_run(tmp_path, capsys, image_folder):
    results, out, _ = cli_run(
        tmp_path,
        capsys,
        "--scenario",
        "folder-b2-2",
        "--data-root",
        str(image_folder),
        "--strategy",
        "il-baseline",
        "--memory",
        "3",
        "--epochs",
        "1",
        "--no-progress",
        "--set",
        "model.backbone=tiny",
        "--set",
        "optim.batch_size=8",
    )
    check_results_contract(results, out, n_steps=3)
    assert results["config"]["model"]["backbone"] == "tiny"
    assert [s["n_train"] for s in results["steps"]] == [16, 16 + 6, 16 + 12]


def test_finetune_and_fixed_budget(tmp_path, capsys):
    results, out, _ = cli_run(
        tmp_path,
        capsys,
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        "finetune",
        "--limit-per-class",
        "10",
        *TINY,
        name="ft",
    )
    check_results_contract(results, out, n_steps=3)
    assert [s["n_train"] for s in results["steps"]] == [60, 20, 20] and "memory_size" not in results["steps"][0]
    results, out, _ = cli_run(
        tmp_path,
        capsys,
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        "il-baseline",
        "--memory-budget",
        "24",
        "--limit-per-class",
        "10",
        *TINY,
        name="fixed",
    )
    assert [(s["memory_per_class"], s["memory_size"]) for s in results["steps"]] == [(4, 24), (3, 24), (2, 20)]


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    args = ["--scenario", "synthetic-b6-2", "--strategy", "finetune", "--limit-per-class", "4", *TINY]
    cli_run(tmp_path, capsys, *args, name="same")
    assert main(["run", "--out", str(tmp_path / "same"), *args]) == 2
    assert "already holds a run" in capsys.readouterr().err


class Probe(CilPlugin):
    """Records what the engine offers plugins at the start of every step."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def before_step(self, engine):
        record = {
            "step": engine.step,
            "n_old": engine.n_old,
            "n_seen": engine.n_seen,
            "counts": engine.train_class_counts.tolist(),
            "weight": engine.classification_weight,
            "head": engine.model.n_classes,
        }
        previous = engine.previous_model  # white-box: the engine's own teacher, not part of the contract
        if previous is not None:
            x, _ = next(engine.evaluation_batches(engine.train_set.subset(torch.arange(8)), 8))
            engine.model.eval()
            with torch.no_grad():
                now = engine.model(x).logits[:, : engine.n_old]
                before = previous(x).logits
            engine.model.train()
            record["teacher_is_last_model"] = torch.allclose(now, before, atol=1e-6)
            record["teacher_frozen"] = not any(p.requires_grad for p in previous.parameters())
        self.seen.append(record)


def test_engine_bookkeeping(tmp_path):
    args = build_parser().parse_args(
        [
            "run",
            "--scenario",
            "synthetic-b6-2",
            "--strategy",
            "il-baseline-bsce",
            "--limit-per-class",
            "10",
            "--memory",
            "3",
            *TINY,
        ]
    )
    probe = Probe()
    run(run_config_from_args(args), out=tmp_path / "probe", extra_plugins=[probe], log=lambda line: None)
    s0, s1, s2 = probe.seen
    assert (s0["n_old"], s0["n_seen"], s0["head"], s0["weight"]) == (0, 6, 6, 1.0)
    assert s0["counts"] == [10.0] * 6
    assert (s1["n_old"], s1["n_seen"], s1["head"]) == (6, 8, 8)
    assert s1["counts"] == [3.0] * 6 + [10.0] * 2  # n_i of Eq. 3: exemplars for old, all images for new
    assert s1["weight"] == pytest.approx(1 - 6 / 8)  # (1 - rho) of Eq. 1
    assert s2["counts"] == [3.0] * 8 + [10.0] * 2
    assert s1["teacher_is_last_model"] and s1["teacher_frozen"] and s2["teacher_is_last_model"]


def test_same_seed_same_results(tmp_path, capsys):
    """Bitwise repeatable on the CPU (on a GPU only with deterministic: true)."""
    args = [
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        "il-baseline",
        "--limit-per-class",
        "8",
        "--memory",
        "2",
        "--device",
        "cpu",
        *TINY,
    ]
    a, _, _ = cli_run(tmp_path, capsys, *args, name="a")
    b, _, _ = cli_run(tmp_path, capsys, *args, name="b")
    assert [s["accuracy"] for s in a["steps"]] == [s["accuracy"] for s in b["steps"]]
    assert a["steps"][-1]["final_epoch_loss"] == b["steps"][-1]["final_epoch_loss"]


@pytest.mark.parametrize(
    "strategy, terms, finetuned",
    [
        ("lucir", {"classification", "less_forget", "margin_ranking"}, False),
        ("lucir-bsce", {"classification", "less_forget", "margin_ranking"}, False),
        ("podnet", {"classification", "pod_spatial", "pod_flat"}, True),
        ("podnet-bsce", {"classification", "pod_spatial", "pod_flat"}, False),
    ],
)
def test_lucir_and_podnet_run(tmp_path, capsys, strategy, terms, finetuned):
    results, out, _ = cli_run(
        tmp_path,
        capsys,
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        strategy,
        "--limit-per-class",
        "8",
        "--memory",
        "3",
        *TINY,
        "--set",
        "plugins.balanced-finetuning.epochs=1" if finetuned else "seed=1993",
    )
    check_results_contract(results, out, n_steps=3)
    assert results["eval"] == "cnn"
    incremental = results["steps"][1:]
    assert all(set(s["final_epoch_loss"]) == terms for s in incremental)
    assert all(("balanced_finetuning" in s) == finetuned for s in incremental)
    loss = "bsce" if strategy.endswith("bsce") else ("nca" if strategy == "podnet" else "ce")
    assert results["config"]["loss"]["name"] == loss


def test_nme_evaluation_is_recorded(tmp_path, capsys):
    results, out, _ = cli_run(
        tmp_path,
        capsys,
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        "il-baseline",
        "--limit-per-class",
        "8",
        "--memory",
        "3",
        *TINY,
        "--set",
        "plugins=[nme]",
    )
    check_results_contract(results, out, n_steps=3)
    assert results["eval"] == "nme"


def test_nme_without_memory_is_one_clear_error(tmp_path, capsys):
    code = main(
        [
            "run",
            "--scenario",
            "synthetic-b6-2",
            "--strategy",
            "finetune",
            "--limit-per-class",
            "4",
            "--out",
            str(tmp_path / "x"),
            *TINY,
            "--set",
            "plugins=[nme]",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "nme classifies by the means of the exemplars: use a memory" in err  # before any data
    assert not (tmp_path / "x").exists()


def test_bsce_counts_follow_the_training_set():
    from cil.strategies.bsce import BalancedSoftmaxCE, BSCEConfig

    from cil.training.training_set import TrainingSet

    class Strategy:
        n_old = 1
        train_set = TrainingSet(torch.arange(5), torch.tensor([0, 1, 1, 1, 1]))

        @property
        def train_class_counts(self):
            return torch.bincount(self.train_set.labels, minlength=2).float()

    strategy, loss = Strategy(), BalancedSoftmaxCE(BSCEConfig(alpha=0.5))
    assert loss.class_weights(strategy).tolist() == [0.5, 4.0]
    strategy.train_set = TrainingSet(torch.arange(4), torch.tensor([0, 0, 1, 1]))  # e.g. a balanced phase
    assert loss.class_weights(strategy).tolist() == [1.0, 2.0]


# ---------------------------------------------------------------- exemplar-free, Meta BSCE, NCM / SLDA

STRATEGIES_WITHOUT_MEMORY = {  # strategy: a loss term that needs the previous model (None: no distillation)
    "finetune": None,
    "il-baseline": "distillation",
    "il-baseline-bsce": "distillation",
    "il-baseline-relaxed-bsce": "distillation",
    "lucir": "less_forget",
    "lucir-bsce": "less_forget",
    "lucir-relaxed-bsce": "less_forget",
    "podnet": "pod_spatial",
    "podnet-bsce": "pod_spatial",
    "podnet-relaxed-bsce": "pod_spatial",
    "ncm": None,
    "slda": None,
    "wa": "distillation",
    "eeil": "task_distillation",
    "ss-il": "task_distillation",
    **{
        f"il-baseline-{name}": "distillation"
        for name in (
            "memory-oversampling",
            "class-oversampling",
            "loss-rescaling",
            "balanced-finetuning",
            "separated-softmax",
            "gala",
            "gbg",
            "mfw",
        )
    },
}


NEED_A_MEMORY = {"il-baseline-meta-bsce", "lucir-meta-bsce", "podnet-meta-bsce", "icarl", "icarl-hou", "bic"}
"""Meta BSCE draws B_t from the exemplars, iCaRL (both readings) classifies by their means, BiC sizes its
validation set by them."""


def test_every_strategy_is_listed_here():
    from cil.config import available_strategies

    assert set(available_strategies()) == set(STRATEGIES_WITHOUT_MEMORY) | NEED_A_MEMORY


@pytest.mark.parametrize("strategy", sorted(STRATEGIES_WITHOUT_MEMORY))
def test_every_strategy_runs_without_memory(tmp_path, capsys, strategy):
    results, out, _ = cli_run(
        tmp_path,
        capsys,
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        strategy,
        "--limit-per-class",
        "8",
        "--memory",
        "0",
        *TINY,
        *tiny_set_args(strategy),
    )
    check_results_contract(results, out, n_steps=3)
    assert all(s["n_train"] == len(s["classes"]) * 8 for s in results["steps"])  # new data only
    term = STRATEGIES_WITHOUT_MEMORY[strategy]
    if term is not None:  # distillation still uses the previous model
        assert all(term in s["final_epoch_loss"] for s in results["steps"][1:])


@pytest.mark.parametrize("strategy", ["il-baseline-meta-bsce", "lucir-meta-bsce", "podnet-meta-bsce"])
def test_meta_bsce_learns_and_records_alpha(tmp_path, capsys, strategy):
    results, out, _ = cli_run(
        tmp_path,
        capsys,
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        strategy,
        "--limit-per-class",
        "12",
        "--memory",
        "4",
        *TINY,
        "--set",
        "loss.update_every=1",
        "--set",
        "loss.validation_per_class=2",
    )
    check_results_contract(results, out, n_steps=3)
    base, *incremental = results["steps"]
    assert "alpha" not in base and base["n_train"] == 6 * 12
    for step, n_old in zip(incremental, (6, 8)):
        assert step["validation_per_class"] == 2
        assert step["n_train"] == 2 * 12 + n_old * 4 - (n_old + 2) * 2  # D_t: B_t taken out
        assert step["alpha_updates"] == -(-step["n_train"] // 16)  # every batch with update_every=1
        assert step["alpha"] > 0 and step["alpha"] != 1.0
        assert step["alpha_per_epoch"] == [step["alpha"]]  # one epoch


@pytest.mark.parametrize("memory, message", [("0", "at least 2 exemplars"), ("1", "at least 2 exemplars")])
def test_meta_bsce_needs_a_memory(tmp_path, capsys, memory, message):
    code = main(
        [
            "run",
            "--scenario",
            "synthetic-b6-2",
            "--strategy",
            "lucir-meta-bsce",
            "--limit-per-class",
            "4",
            "--memory",
            memory,
            "--out",
            str(tmp_path / "x"),
            *TINY,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


class WeightProbe(CilPlugin):
    def __init__(self):
        super().__init__()
        self.backbones = []

    def after_training(self, engine):
        self.backbones.append({k: v.clone() for k, v in engine.model.backbone.state_dict().items()})


@pytest.mark.parametrize("strategy", ["ncm", "slda"])
def test_frozen_feature_baselines_train_the_base_step_only(tmp_path, strategy):
    args = build_parser().parse_args(
        ["run", "--scenario", "synthetic-b6-2", "--strategy", strategy, "--limit-per-class", "8", *TINY]
    )
    probe = WeightProbe()
    results = run(run_config_from_args(args), out=tmp_path / "r", extra_plugins=[probe], log=lambda line: None)
    assert results["eval"] == strategy
    assert [s.get("trained_epochs") for s in results["steps"]] == [None, 0, 0]
    base, *later = probe.backbones
    assert all(torch.equal(base[k], w[k]) for w in later for k in base)  # weights and BatchNorm statistics


class ScaleProbe(CilPlugin):
    """The cosine head's scale and weights after each step's main training and after its later stages."""

    def __init__(self):
        super().__init__()
        self.trained, self.finished = [], []

    def snapshot(self, engine):
        head = engine.model.head
        return float(head.scale.detach()), torch.cat([p.detach().flatten() for p in head.parameters()]).clone()

    def after_epoch(self, engine):
        self.trained.append(self.snapshot(engine))

    def after_training(self, engine):
        self.finished.append(self.snapshot(engine))


@pytest.mark.parametrize("tune_scale", [False, True])
def test_lucir_balanced_finetuning_as_the_official_code(tmp_path, tune_scale):
    """LUCIR's --cb_finetune (full ImageNet profile): the whole LUCIR loss on the balanced set, every class's
    weights trained, sigma fixed (tune_scale: false); with tune_scale sigma moves too."""
    tune = str(tune_scale).lower()
    finetuning = f"{{name: balanced-finetuning, epochs: 2, lr: 0.05, tune_scale: {tune}, strategy_loss: true}}"
    args = build_parser().parse_args(
        [
            "run",
            "--scenario",
            "synthetic-b6-2",
            "--strategy",
            "lucir",
            "--limit-per-class",
            "10",
            "--memory",
            "3",
            *TINY,
            "--set",
            f"plugins=[{finetuning}]",
        ]
    )
    probe = ScaleProbe()
    results = run(run_config_from_args(args), out=tmp_path / "r", extra_plugins=[probe], log=lambda line: None)
    for step in results["steps"][1:]:
        record = step["balanced_finetuning"]
        assert set(record["final_epoch_parts"]) == {"classification", "less_forget", "margin_ranking"}
        assert record["final_epoch_loss"] == pytest.approx(sum(record["final_epoch_parts"].values()))
    for t in (1, 2):  # step t's last main epoch is probe.trained[t] (one epoch per step)
        (scale_before, weights_before), (scale_after, weights_after) = probe.trained[t], probe.finished[t]
        assert not torch.equal(weights_before, weights_after)
        assert (scale_after != scale_before) == tune_scale
