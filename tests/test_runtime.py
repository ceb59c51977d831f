"""The ``runtime`` section: validation, what ``auto`` resolves to, every setting end to end on the CPU,
and a training loop that never reads device values on the host."""

import copy
import json
from pathlib import Path

import pytest
import torch

from cil.cli import main
from cil.config import RuntimeConfig
from cil.errors import UserError
from cil.models import build_net
from cil.runs.assemble import build_config
from cil.runs.run import run
from cil.training.contract import CilPlugin
from cil.training.runtime import LossScaler, Runtime
from tests.helpers import check_results_contract, quiet, tiny_sets
from tests.sync_detector import SyncDetector

TINY = ["model.backbone=tiny", "optim.batch_size=8", "data.synthetic_classes=6", "data.test_limit_per_class=2"]
FLAGS = {
    "epochs": 1,
    "progress": False,
    "logging": {"loggers": []},
    "data": {"limit_per_class": 12},
    "memory": {"per_class": 3, "budget": None},
}


def tiny_run(tmp_path: Path, strategy: str, *sets: str, scenario="synthetic-b4-1", extra_plugins=(), flags=None):
    cfg = build_config(scenario, strategy, copy.deepcopy(flags or FLAGS), [*TINY, *tiny_sets(strategy), *sets])
    return run(
        cfg, out=tmp_path / f"{strategy}-{len(list(tmp_path.iterdir()))}", extra_plugins=list(extra_plugins), log=quiet
    )


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("runtime.precision=fp8", "invalid value for 'runtime.precision': 'fp8'; valid: auto, fp32, bf16, fp16"),
        ("runtime.channels_last=maybe", "'runtime.channels_last': expected auto or true or false, got 'maybe'"),
        ("runtime.compile=2", "'runtime.compile': expected true or false, got 2"),
        ("runtime.eval_batch_size=0", "'runtime.eval_batch_size': must be in [1, 1048576]"),
        ("runtime.eval_batch_size=big", "'runtime.eval_batch_size': expected an integer, got 'big'"),
        ("runtime.speed=max", "unknown key 'runtime.speed'"),
    ],
)
def test_bad_runtime_values_are_one_line(assignment, message, capsys):
    assert main(["run", "--scenario", "synthetic-b4-1", "--strategy", "il-baseline", "--set", assignment]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_incompatible_combination_is_refused(capsys):
    assert (
        main(["run", "--scenario", "synthetic-b4-1", "--strategy", "il-baseline-gbg", "--set", "runtime.compile=true"])
        == 2
    )
    err = capsys.readouterr().err
    assert "use runtime.compile=false with gbg" in err and len(err.strip().splitlines()) == 1


def test_auto_resolves_per_device(monkeypatch):
    cpu = Runtime.resolve(RuntimeConfig(), torch.device("cpu"))
    assert (cpu.precision, cpu.channels_last, cpu.compile, cpu.eval_batch_size) == ("fp32", True, False, 256)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = Runtime.resolve(RuntimeConfig(), torch.device("cuda"))
    assert (gpu.precision, gpu.channels_last, gpu.eval_batch_size) == ("bf16", True, 1024)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert Runtime.resolve(RuntimeConfig(), torch.device("cuda")).precision == "fp32"
    with pytest.raises(UserError, match="no bfloat16 support"):
        Runtime.resolve(RuntimeConfig(precision="bf16"), torch.device("cuda"))
    explicit = Runtime.resolve(RuntimeConfig(precision="fp16", channels_last=True, eval_batch_size=64), "cpu")
    assert (explicit.precision, explicit.channels_last, explicit.eval_batch_size) == ("fp16", True, 64)


def test_runtime_settings_may_change_on_resume_only_where_results_do_not_depend_on_them():
    from cil.config import config_differences

    a = build_config("synthetic-b4-1", "il-baseline", {}, ["runtime.compile=true", "runtime.eval_batch_size=64"])
    b = build_config("synthetic-b4-1", "il-baseline", {}, [])
    assert config_differences(a.to_dict(), b.to_dict()) == []
    c = build_config("synthetic-b4-1", "il-baseline", {}, ["runtime.precision=bf16"])
    assert config_differences(c.to_dict(), b.to_dict()) == ["runtime.precision"]


# ------------------------------------------------------------------ arithmetic


def test_the_head_computes_in_fp32_under_autocast():
    net = build_net("tiny", "lsc", proxies_per_class=2)
    net.head.add_classes(3)
    runtime = Runtime.resolve(RuntimeConfig(precision="bf16"), torch.device("cpu"))
    with runtime.autocast():
        out = net(torch.randn(4, 3, 32, 32))
    assert out.logits.dtype == out.features.dtype == torch.float32
    assert out.stage_maps[0].dtype == torch.bfloat16  # the backbone did run in bf16


def test_fp16_virtual_step_falls_back_to_fp32_and_loss_scaler_passes_through():
    runtime = Runtime.resolve(RuntimeConfig(precision="fp16"), torch.device("cpu"))
    with runtime.autocast(allow_fp16=False):
        assert not torch.is_autocast_enabled("cpu")
    with runtime.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.float16
    loss = torch.tensor(2.0)
    assert LossScaler().scale(loss) is loss and runtime.loss_scaler().scaler is not None


def test_features_are_normal_tensors_and_copies_are_compiled_again(tmp_path):
    runtime = Runtime.resolve(RuntimeConfig(compile=True), torch.device("cpu"))
    net = runtime.prepare(build_net("tiny", "linear"))
    assert net.backbone._compiled_call_impl is not None
    copied = copy.deepcopy(net)
    assert copied.backbone._compiled_call_impl is None  # a deep copy drops the compiled call...
    assert runtime.prepare_copy(copied).backbone._compiled_call_impl is not None  # ...and the engine restores it


# ------------------------------------------------------------------ every setting end to end


@pytest.mark.parametrize(
    "sets",
    [
        ["runtime.precision=bf16"],
        ["runtime.precision=fp16"],
        ["runtime.channels_last=false", "runtime.eval_batch_size=5"],
    ],
)
@pytest.mark.parametrize("strategy", ["il-baseline-bsce", "podnet-meta-bsce", "il-baseline-gbg"])
def test_tiny_runs_under_every_precision_and_layout(tmp_path, strategy, sets):
    results = tiny_run(tmp_path, strategy, *sets)
    out = next(tmp_path.iterdir())
    check_results_contract(results, out, n_steps=2)
    saved = json.loads((out / "results.json").read_text())
    key, value = sets[0].split("=")
    assert str(saved["config"]["runtime"][key.split(".")[1]]).lower() == value
    assert saved["env"]["runtime"]["precision"] in ("fp32", "bf16", "fp16")


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["runtime.precision=bf16", "runtime.precision=fp16", "runtime.compile=true"])
def test_every_named_strategy_runs_under_every_setting(tmp_path, setting):
    """The promise of docs/performance.md, strategy by strategy (slow: compiles several backbones)."""
    from cil.config import IncompatibleConfigError, available_strategies

    refused = []
    for strategy in available_strategies():
        flags = copy.deepcopy(FLAGS)
        if strategy in ("finetune", "ncm", "slda") or "relaxed" in strategy:
            flags["memory"] = {"per_class": 0, "budget": None}
        try:
            results = tiny_run(tmp_path, strategy, setting, flags=flags)
        except IncompatibleConfigError:
            refused.append(strategy)
            continue
        assert results["status"] == "complete", strategy
    assert refused == (["il-baseline-gbg"] if setting == "runtime.compile=true" else [])


def test_virtual_step_of_a_compiled_model_uses_the_virtual_weights():
    """higher's functional copy must not inherit the compiled call (which would run the real weights):
    the gradient with respect to alpha is the eager model's, bit for bit."""
    import torch.nn.functional as F

    from cil.training.virtual_step import validation_loss_after_virtual_step

    torch.manual_seed(0)
    net = build_net("tiny", "linear")
    net.head.add_classes(4)
    x, y, x_val = torch.randn(8, 3, 32, 32), torch.arange(8) % 4, torch.randn(8, 3, 32, 32)
    log_alpha = torch.zeros((), requires_grad=True)

    def alpha_gradient(model):
        def inner(out):  # a loss that depends on alpha
            return F.cross_entropy(out.logits + torch.cat([log_alpha.expand(2), torch.zeros(2)]), y)

        loss = validation_loss_after_virtual_step(
            model, inner, x, lambda out: F.cross_entropy(out.logits, y), x_val, 0.5
        )
        return torch.autograd.grad(loss, [log_alpha])[0]

    eager = alpha_gradient(net)
    runtime = Runtime.resolve(RuntimeConfig(compile=True, channels_last=False), torch.device("cpu"))
    compiled = alpha_gradient(runtime.prepare(net))
    assert eager != 0 and torch.equal(eager, compiled)
    assert net.backbone._compiled_call_impl is not None  # restored after the step


def test_virtual_step_through_channels_last_strided_shortcuts_with_an_odd_batch():
    """PyTorch 2.14 crashes (segfault) in the double backward of a channels-last strided 1x1 convolution
    with an odd batch on the CPU; the virtual step runs in NCHW there and gives the NCHW gradient."""
    import torch.nn.functional as F

    from cil.training.virtual_step import validation_loss_after_virtual_step

    def alpha_gradient(channels_last: bool):
        torch.manual_seed(0)
        net = build_net("tiny", "linear", shortcut="B")
        net.head.add_classes(4)
        x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 3])
        if channels_last:
            net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        alpha = torch.zeros((), requires_grad=True)
        loss = validation_loss_after_virtual_step(
            net,
            lambda out: F.cross_entropy(out.logits * (1 + alpha), y),
            x,
            lambda out: F.cross_entropy(out.logits, y),
            x,
            0.1,
        )
        if channels_last:  # the model keeps its layout
            assert net.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
        return torch.autograd.grad(loss, [alpha])[0]

    assert torch.allclose(alpha_gradient(True), alpha_gradient(False), rtol=1e-4)


def test_compiled_run_end_to_end(tmp_path):
    flags = {**FLAGS, "data": {"limit_per_class": 30}}
    eager = tiny_run(tmp_path, "il-baseline-meta-bsce", flags=flags)
    compiled = tiny_run(tmp_path, "il-baseline-meta-bsce", "runtime.compile=true", flags=flags)
    check_results_contract(compiled, sorted(tmp_path.iterdir())[-1], n_steps=2)
    assert compiled["env"]["runtime"]["compile"] is True
    assert compiled["steps"][1]["alpha_updates"] == eager["steps"][1]["alpha_updates"] > 0
    # compiled kernels round differently, so the two trainings drift apart a little
    assert compiled["steps"][1]["alpha"] == pytest.approx(eager["steps"][1]["alpha"], rel=1e-2)


# ------------------------------------------------------------------ no host reads per batch

SYNC_FREE = [
    "il-baseline",
    "il-baseline-bsce",
    "il-baseline-meta-bsce",
    "il-baseline-relaxed-bsce",
    "lucir",
    "lucir-bsce",
    "podnet",
    "podnet-bsce",
    "podnet-relaxed-bsce",
    "il-baseline-gala",
    "il-baseline-mfw",
    "il-baseline-memory-oversampling",
    "il-baseline-class-oversampling",
    "il-baseline-loss-rescaling",
    "il-baseline-separated-softmax",
    "il-baseline-balanced-finetuning",
    "ncm",
    "icarl",
    "bic",
    "wa",
    "eeil",
    "ss-il",
]


@pytest.mark.parametrize("strategy", SYNC_FREE)
def test_training_batches_never_read_device_values(tmp_path, strategy):
    detector = SyncDetector()
    flags = {**FLAGS, "data": {"limit_per_class": 30}}
    if "relaxed" in strategy:
        flags["memory"] = {"per_class": 0, "budget": None}
    tiny_run(tmp_path, strategy, extra_plugins=[detector], flags=flags)
    assert detector.found == []


def test_the_detector_sees_host_reads(tmp_path):
    class Reads(CilPlugin):
        def loss_terms(self, strategy, output, targets):
            if output.logits.sum() > 0:  # a Python branch on a tensor value
                pass
            return {}

    detector = SyncDetector()
    tiny_run(tmp_path, "il-baseline", extra_plugins=[Reads(), detector])
    assert detector.found and detector.found[0][0] == "__bool__"


def test_epoch_losses_equal_the_sum_of_per_batch_values(tmp_path):
    """The device-side sums give exactly the per-batch float values' means (fp32, CPU)."""

    from avalanche.core import SupervisedPlugin

    class PerBatch(SupervisedPlugin):  # an Avalanche plugin sees the engine itself, internals included
        def __init__(self):
            super().__init__()
            self.sums, self.batches, self.means = {}, 0, []

        def before_training_epoch(self, strategy, **kwargs):
            self.sums, self.batches = {}, 0

        def after_training_iteration(self, strategy, **kwargs):
            for name, value in strategy.batch_loss_parts.items():
                self.sums[name] = self.sums.get(name, 0.0) + float(value.detach())
            self.batches += 1

        def after_training_epoch(self, strategy, **kwargs):
            self.means.append(({k: v / self.batches for k, v in self.sums.items()}, dict(strategy.loss_parts)))

    plugin = PerBatch()
    flags = {**FLAGS, "epochs": 2, "data": {"limit_per_class": 20}}
    tiny_run(tmp_path, "podnet-bsce", extra_plugins=[plugin], flags=flags)
    assert len(plugin.means) == 4 and set(plugin.means[-1][1]) == {"classification", "pod_spatial", "pod_flat"}
    for by_hand, engine in plugin.means:
        assert by_hand == engine  # exactly, not approximately


NO_DETERMINISTIC_CUDA_BACKWARD = {
    "AdaptiveAvgPool2DBackward0",
    "AdaptiveAvgPool3DBackward0",
    "AdaptiveMaxPool2DBackward0",
    "AvgPool3DBackward0",
    "MaxPool3DWithIndicesBackward0",
    "FractionalMaxPool2DBackward0",
    "FractionalMaxPool3DBackward0",
    "ReflectionPad1DBackward0",
    "ReflectionPad2DBackward0",
    "ReflectionPad3DBackward0",
    "UpsampleLinear1DBackward0",
    "UpsampleBilinear2DBackward0",
    "UpsampleBicubic2DBackward0",
    "UpsampleTrilinear3DBackward0",
    "NllLoss2DBackward0",
    "EmbeddingBagBackward0",
}
"""Backward functions whose CUDA kernels ``torch.use_deterministic_algorithms(True)`` refuses (PyTorch's list)."""


def backward_functions(tensor: torch.Tensor) -> set[str]:
    seen, names, todo = set(), set(), [tensor.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        todo.extend(next_fn for next_fn, _ in fn.next_functions)
    return names


@pytest.mark.parametrize("backbone", ["resnet32", "resnet8", "tiny", "podnet-resnet32", "resnet18"])
@pytest.mark.parametrize("head", ["linear", "cosine", "lsc"])
def test_deterministic_gpu_runs_have_a_kernel_for_every_backward(backbone, head):
    """``deterministic=true`` on a GPU stops at the first backward without a deterministic CUDA kernel: none of
    the networks' backward functions (as autograd records them here) is one. Global pooling is
    ``adaptive_avg_pool2d(x, 1)``, which PyTorch computes as a mean (its general kernel has no deterministic
    CUDA backward); the GPU tests run ``deterministic=true`` end to end."""
    net = build_net(backbone, head)
    net.head.add_classes(4)
    side = 64 if backbone == "resnet18" else 32
    out = net(torch.randn(2, 3, side, side))
    names = backward_functions(out.logits.sum() + sum(m.sum() for m in out.stage_maps))
    assert "ConvolutionBackward0" in names and not names & NO_DETERMINISTIC_CUDA_BACKWARD


def test_the_cpu_thread_count_is_a_runtime_setting(tmp_path):
    """Issue 35 item 7: runtime.threads sets torch's CPU threads for the run (and is free to change on resume)."""
    import torch

    from cil.config import RUNTIME_KEYS

    lines: list[str] = []
    before = torch.get_num_threads()
    try:
        cfg = build_config("synthetic-b4-1", "il-baseline", copy.deepcopy(FLAGS), [*TINY, "runtime.threads=1"])
        run(cfg, out=tmp_path / "r", log=lines.append)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert any("device cpu (1 threads)" in line for line in lines), lines
    assert "runtime.threads" in RUNTIME_KEYS
