"""Config layering, typed --set overrides and validation."""

import re

import pytest

from cil import registry
from cil.config import ConfigError, OptimConfig, assemble
from cil.errors import UserError


def make(strategy="il-baseline-bsce", dataset="cifar100", sets=(), **flags):
    return assemble(
        scenario=f"{dataset}-b50-5",
        strategy=strategy,
        dataset=dataset,
        flags=dict(flags),
        sets=list(sets),
        lookup=registry.config_class,
    )


def test_strategy_files_resolve_with_paper_defaults():
    cfg = make()
    assert cfg.method.name == "il-baseline" and cfg.method.temperature == 2.0
    assert cfg.loss.name == "bsce" and cfg.loss.alpha == 1.0
    assert (cfg.optim.epochs, cfg.optim.batch_size, cfg.optim.weight_decay) == (250, 128, 2e-4)
    assert cfg.optim.milestones == [100, 150, 200]
    assert cfg.memory.per_class == 20 and cfg.memory.selection == "herding"


def test_extends_swaps_the_loss_without_leaking_parameters():
    assert make("il-baseline").loss.name == "ce"
    finetune = make("finetune")
    assert finetune.method.name == "finetune" and finetune.memory.per_class == 0
    assert not hasattr(finetune.method, "temperature")


def test_imagenet_profile():
    cfg = make(dataset="imagenet-subset")
    assert (cfg.optim.epochs, cfg.optim.batch_size, cfg.optim.weight_decay) == (100, 256, 1e-4)
    assert cfg.optim.milestones == [30, 60, 80, 90]


def test_set_is_typed():
    cfg = make(
        sets=[
            "optim.lr=0.05",
            "loss.alpha=0.25",
            "optim.weight_decay=1e-4",
            "method.rho=null",
            "optim.milestones=10,20",
            "seed=7",
        ]
    )
    assert cfg.optim.lr == 0.05 and cfg.loss.alpha == 0.25 and cfg.optim.weight_decay == 1e-4
    assert cfg.optim.milestones == [10, 20] and cfg.seed == 7 and cfg.method.rho is None


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("optim.lrr=0.1", "unknown key 'optim.lrr' (did you mean 'lr'?)"),
        ("method.temprature=3", "unknown key 'method.temprature'"),
        ("optim.lr=fast", "invalid value for 'optim.lr': expected a number"),
        ("optim.lr=-1", "invalid value for 'optim.lr': must be > 0"),
        ("loss.alpha=0", "invalid value for 'loss.alpha'"),
        ("memory.selection=best", "valid: herding, random"),
        ("optim.batch_size=2.5", "expected an integer"),
        ("loss.name=focal", "unknown loss 'focal'"),
        ("optim", "--set expects key=value"),
        ("seed=-3", "invalid value for 'seed': must be in [0, 4294967295]"),
        ("class_order_seed=4294967296", "invalid value for 'class_order_seed': must be in [0, 4294967295]"),
        ("optim.momentum=1", "invalid value for 'optim.momentum': must be in [0, 1)"),
        ("method.temperature=.nan", "invalid value for 'method.temperature': expected a finite number, got nan"),
        ("memory.per_class=-1", "must be >= 0 (0 = no exemplars)"),
    ],
)
def test_bad_overrides_are_one_clear_error(assignment, message):
    with pytest.raises(UserError, match=re.escape(message)) as info:
        make(sets=[assignment])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "strategy, assignment, message",
    [
        ("il-baseline-meta-bsce", "loss.alpha_update=exp", "'loss.alpha_update': 'exp'; valid: alpha, log-alpha"),
        ("il-baseline-meta-bsce", "loss.alpha_min=0", "invalid value for 'loss.alpha_min'"),
        ("il-baseline-meta-bsce", "loss.alpha_min=2", "invalid value for 'loss.alpha_min'"),
        ("lucir", "plugins=[{name: balanced-finetuning, strategy_loss: maybe}]", "strategy_loss"),
    ],
)
def test_bad_alpha_update_and_finetuning_options_are_one_clear_error(strategy, assignment, message, capsys):
    from cil.cli import main

    with pytest.raises(UserError, match=re.escape(message)) as info:
        make(strategy, sets=[assignment])
    assert "\n" not in str(info.value)
    assert main(["run", "--scenario", "synthetic-b4-1", "--strategy", strategy, "--set", assignment]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_scenario_profile_of_the_wrong_shape_is_one_line(tmp_path):
    from cil.config.layers import load_yaml
    from cil.config.shapes import SCENARIO_FILE

    path = tmp_path / "s.yaml"
    path.write_text("profile: {imagenet: true}\n")
    with pytest.raises(UserError, match="profile") as info:
        load_yaml(path, SCENARIO_FILE, "scenario file")
    assert "\n" not in str(info.value)
    path.write_text("profile: [imagenet, imagenet-full]\n")
    assert load_yaml(path, SCENARIO_FILE, "scenario file")["profile"] == ["imagenet", "imagenet-full"]


def test_unknown_strategy_lists_valid_ones():
    with pytest.raises(UserError, match="unknown strategy 'il-baseline-bcse' \\(did you mean 'il-baseline-bsce'"):
        make("il-baseline-bcse")


def test_epochs_flag_scales_milestones():
    cfg = make(epochs=25)
    assert cfg.optim.epochs == 25 and cfg.optim.milestones == [10, 15, 20]
    assert OptimConfig(epochs=250, milestones=[100, 150, 200]).with_epochs(2).milestones == [1]
    explicit = make(epochs=3, sets=["optim.milestones=[1,2]"])  # --set wins over --epochs' scaling
    assert explicit.optim.epochs == 3 and explicit.optim.milestones == [1, 2]
    # halves round up (issue 35 item 1: LUCIR's 80 and 120 of 160 epochs at 5 epochs were [2, 4])
    assert OptimConfig(epochs=160, milestones=[80, 120]).with_epochs(5).milestones == [3, 4]
    assert OptimConfig(epochs=4, milestones=[1, 3], warmup_epochs=1).with_epochs(10).milestones == [3, 8]


def test_cli_flags_override_yaml():
    cfg = make(memory={"per_class": 5, "budget": None}, seed=3)
    assert cfg.memory.per_class == 5 and cfg.seed == 3
    assert make(memory={"budget": 2000}).memory.budget == 2000


def test_invalid_memory():
    with pytest.raises(ConfigError, match="memory.per_class"):
        make(memory={"per_class": -1})


def test_lucir_and_podnet_files_differ_from_their_bsce_variant_only_in_loss_and_finetuning():
    for base in ("lucir", "podnet"):
        for dataset in ("cifar100", "imagenet-subset"):
            plain, bsce = make(base, dataset=dataset).to_dict(), make(f"{base}-bsce", dataset=dataset).to_dict()
            differing = {k for k in plain if plain[k] != bsce[k]}
            assert differing <= {"strategy", "loss", "plugins"}, differing
            assert bsce["loss"]["name"] == "bsce" and bsce["plugins"] == []


def test_lucir_and_podnet_defaults():
    lucir = make("lucir")
    assert (lucir.method.lambda_base, lucir.method.margin, lucir.method.top_k) == (5.0, 0.5, 2)
    assert lucir.model.head == "cosine" and lucir.optim.milestones == [80, 120] and lucir.plugins == []
    lucir_in = make("lucir", dataset="imagenet-subset")
    assert lucir_in.method.lambda_base == 10.0 and lucir_in.plugins == []  # the official code: full ImageNet only
    lucir_full = make("lucir", dataset="imagenet")
    assert lucir_full.method.lambda_base == 10.0 and lucir_full.optim.milestones == [30, 60]
    (finetuning,) = lucir_full.plugins
    assert (finetuning.name, finetuning.epochs, finetuning.lr, finetuning.milestones) == (
        "balanced-finetuning",
        20,
        0.01,
        [10],
    )
    assert finetuning.classifier_only and not finetuning.tune_scale and not finetuning.update_bn
    assert finetuning.strategy_loss  # CE + less-forget + margin ranking, sigma out of the optimizer
    podnet = make("podnet")
    assert (podnet.method.spatial_factor, podnet.method.flat_factor, podnet.loss.margin) == (3.0, 1.0, 0.6)
    assert podnet.model.head == "lsc" and podnet.optim.schedule == "cosine"
    assert (podnet.plugins[0].epochs, podnet.plugins[0].lr, podnet.plugins[0].classifier_only) == (20, 0.05, True)
    podnet_in = make("podnet", dataset="imagenet-subset")
    assert (podnet_in.method.spatial_factor, podnet_in.method.flat_factor, podnet_in.optim.batch_size) == (
        8.0,
        10.0,
        64,
    )
    assert make("podnet", sets=["plugins.balanced-finetuning.epochs=3"]).plugins[0].epochs == 3
    for dataset in ("cifar100", "imagenet-subset", "imagenet"):  # the official options: color_jitter on all
        assert make("podnet", dataset=dataset).data.brightness_jitter == pytest.approx(63 / 255, abs=1e-3)


def test_set_name_switches_the_component_and_drops_its_keys():
    cfg = make("podnet", sets=["loss.name=loss-rescaling"])
    assert cfg.loss.name == "loss-rescaling" and not hasattr(cfg.loss, "margin")
    cfg = make("il-baseline", sets=["loss.name=bsce", "loss.alpha=0.5"])
    assert cfg.loss.alpha == 0.5


def test_plugin_flag_appends_to_the_strategys_plugins():
    cfg = assemble(
        scenario="cifar100-b50-5",
        strategy="podnet",
        dataset="cifar100",
        flags={"add_plugins": ["mfw", "gala"]},
        sets=["plugins.mfw.stage=3"],
        lookup=registry.config_class,
    )
    assert [p.name for p in cfg.plugins] == ["balanced-finetuning", "mfw", "gala"]
    assert cfg.plugins[1].stage == 3


def test_strategy_plus_plugin_is_the_strategy_with_the_plugin_added():
    from cil.config import split_strategy, strategy_label

    named = make("lucir+bic-bias-layer")
    flagged = make("lucir", add_plugins=["bic-bias-layer"])
    assert [p.name for p in named.plugins] == [p.name for p in flagged.plugins] == ["bic-bias-layer"]
    assert named.strategy == flagged.strategy == "lucir+bic-bias-layer"  # filed and reported under this name
    assert named.to_dict() == flagged.to_dict()
    assert make("podnet+mfw", add_plugins=["gala"]).strategy == "podnet+mfw+gala"
    assert [p.name for p in make("podnet+mfw", add_plugins=["gala"]).plugins] == ["balanced-finetuning", "mfw", "gala"]
    assert make("il-baseline").strategy == "il-baseline"
    assert split_strategy("my+own.yaml") == ("my+own.yaml", [])  # a path is whole
    assert strategy_label("configs/mine.yaml+nme") == "mine+nme"
    assert strategy_label("podnet", ["gala"]) == "podnet+gala"
    for bad in ("lucir+", "+nme", "lucir++nme"):
        with pytest.raises(UserError, match="STRATEGY\\+PLUGIN"):
            make(bad)
    with pytest.raises(UserError, match="unknown plugin 'nope'"):
        make("lucir+nope")


def test_declared_ranges_describe_themselves():
    import dataclasses

    from cil.config.fields import Range, ranged

    assert Range(0, 1, high_open=True).describe() == "must be in [0, 1)"
    assert Range(low=0, low_open=True).describe() == "must be > 0"
    assert Range(high=5).describe() == "must be <= 5"
    assert 0.5 in Range(0, 1) and 1 not in Range(0, 1, high_open=True) and float("nan") not in Range(0)

    @dataclasses.dataclass
    class C:
        xs: list = ranged(default_factory=list, ge=1)

    from cil.config import ConfigError
    from cil.config.fields import check_ranges

    check_ranges(C([1, 2]), "c")
    with pytest.raises(ConfigError, match="'c.xs': must be >= 1"):
        check_ranges(C([1, 0]), "c")


def test_extends_paths_are_relative_to_the_file_that_names_them(tmp_path, monkeypatch):
    from cil.config import strategy_layers

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.yaml").write_text("extends: il-baseline\noptim: {lr: 0.05}\n")
    (tmp_path / "sub" / "mine.yaml").write_text("extends: base.yaml\nloss: bsce\n")
    monkeypatch.chdir(tmp_path)  # not the files' folder
    layers = strategy_layers("sub/mine.yaml")
    assert layers[-2]["optim"] == {"lr": 0.05} and layers[-1]["loss"] == "bsce"
    (tmp_path / "sub" / "bad.yaml").write_text("extends: [il-baseline]\n")
    with pytest.raises(UserError, match="'extends' must be a strategy name or a .yaml path"):
        strategy_layers("sub/bad.yaml")


@pytest.mark.parametrize("ref", ["../../x", "../strategies/il-baseline", "..", ".", "strategies/lucir", "~", ""])
def test_a_name_is_looked_up_among_the_named_strategies_only(tmp_path, monkeypatch, ref):
    """``--strategy ../../x`` once read configs/../../x.yaml: a reference with a separator (or ending in .yaml) is
    a path from the working directory, anything else must be one of the named strategies."""
    from cil.config import config_root, strategy_layers

    outside = config_root().parent / "x.yaml"
    assert not outside.exists()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="strategy file not found|unknown strategy|extends"):
        strategy_layers(ref)


def test_a_name_that_is_a_file_outside_configs_is_not_read(tmp_path, monkeypatch):
    from cil.config import config_root, strategy_layers

    planted = config_root() / "planted.yaml"  # beside strategies/: reachable as strategies/../planted
    planted.write_text("optim: {lr: 9.0}\n")
    try:
        with pytest.raises(UserError, match="strategy file not found: ../planted"):
            strategy_layers("../planted")
        with pytest.raises(UserError, match="unknown strategy 'planted'"):
            strategy_layers("planted")
    finally:
        planted.unlink()


def test_a_sweep_name_is_looked_up_among_the_named_sweeps_only(tmp_path, monkeypatch):
    from cil.sweeps.plan import load_plan, sweeps_root

    planted = sweeps_root().parent / "planted.yaml"
    planted.write_text("blocks: []\n")
    monkeypatch.chdir(tmp_path)
    try:
        with pytest.raises(UserError, match="sweep file not found: ../planted"):
            load_plan("../planted")
        with pytest.raises(UserError, match="unknown sweep 'planted'"):
            load_plan("planted")
    finally:
        planted.unlink()
    (tmp_path / "mine.yaml").write_text("description: mine\n")
    assert load_plan("mine.yaml")[1] == "mine"


UNBOUNDED_COUNTS = {
    "memory.per_class": "more exemplars than a class has keeps them all",
    "memory.budget": "likewise for the total",
    "data.limit_per_class": "a limit above a class's count takes every image",
    "data.test_limit_per_class": "likewise for test images",
    "plugin.gala.warmup_batches": "more warm-up batches than a run trains is no re-weighting at all",
    "plugin.balanced-finetuning.per_class": "like memory.per_class: a class with fewer gives all it has",
}


def integer_counts():
    """(dotted key, declared range) of every integer field of the config and of every component's config
    (components as ``KIND.NAME.field``)."""
    import dataclasses
    import typing

    from cil import registry
    from cil.config.fields import field_range
    from cil.config.schema import RunConfig

    def counts(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                yield from counts(hints[f.name], f"{prefix}{f.name}.")
            elif str(hints[f.name]) in ("<class 'int'>", "int | None"):
                yield f"{prefix}{f.name}", field_range(f)

    found = list(counts(RunConfig, ""))
    for kind, name, _ in registry.summaries():
        found += list(counts(registry.config_class(kind, name), f"{kind}.{name}."))
    return found


def test_every_count_has_an_upper_bound_or_a_reason():
    """A count that sizes an allocation or a loop (a batch, epochs, groups) has an upper bound, so that a typo
    (``runtime.eval_batch_size=1000000000000``) is refused at the edge, not by an 8 TB allocation later."""
    missing = [
        key
        for key, bounds in integer_counts()
        if (bounds is None or bounds.high is None) and key not in UNBOUNDED_COUNTS
    ]
    assert not missing


@pytest.mark.parametrize(
    "profiles, message",
    [
        ({"cifarr": {"optim": {"lr": 0.05}}}, "unknown profile 'cifarr' under 'profiles' (did you mean 'cifar'?)"),
        ({"imagenet": {"optim": {"lrr": 0.05}}}, "profile 'imagenet': unknown key 'optim.lrr' (did you mean 'lr'?)"),
        ({"lt-cifar": {"optim": {"milestones": [0]}}}, "profile 'lt-cifar': invalid value for 'optim.milestones'"),
    ],
)
def test_a_strategy_files_profiles_are_checked_as_the_rest_of_it(tmp_path, capsys, profiles, message):
    """Issue 35 item 15: a profile entry whose name is no profile, or whose keys are unknown, was accepted and
    never applied; now one line, before any data, even when this run's dataset does not apply it."""
    import yaml

    from cil.cli import main

    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"extends": "il-baseline", "profiles": profiles}))
    assert main(["run", "--scenario", "synthetic-b6-2", "--strategy", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_epochs_scales_every_stage_in_proportion():
    """Issue 35 item 1: at --epochs 8, BiC's 200-epoch bias layer and EEIL's 30-epoch finetuning kept their
    lengths (EEIL took 5x the time of the others); every stage now scales as the main schedule, at least one
    epoch, and a stage length the command line sets is kept."""
    bic = make(strategy="bic", epochs=8).plugins[0]  # 250 epochs -> 8: factor 0.032
    assert (bic.epochs, bic.milestones) == (6, [2, 4, 5])  # 200 -> 6.4; [60, 120, 160, 180] -> [1.9, 3.8, 5.1, 5.8]
    eeil = {p.name: p for p in make(strategy="eeil", epochs=8).plugins}["balanced-finetuning"]  # 40 -> 8: 0.2
    assert (eeil.epochs, eeil.milestones) == (6, [2, 4])
    kept = make(strategy="eeil", epochs=8, sets=["plugins.balanced-finetuning.epochs=30"])
    assert {p.name: p for p in kept.plugins}["balanced-finetuning"].epochs == 30
    assert make(strategy="bic").plugins[0].epochs == 200  # without --epochs nothing changes
