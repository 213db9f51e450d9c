"""TrainConfig, recipes (spec section 5), optimiser groups, schedules and the train CLI."""

import argparse

import pytest
import torch

import actionlib
from actionlib.engine import TrainConfig, get_recipe, recipe_names
from actionlib.engine.cli import add_train_arguments, resolve_train_config
from actionlib.engine.config import field_names, parse_overrides
from actionlib.engine.loop import build_optimizer, lr_factor_fn


@pytest.mark.parametrize("name,classes_epochs,steps", [
    ("paper-ssv2", 50, [30, 40, 45]), ("paper-jester", 25, [5, 10, 15]), ("paper-egogesture", 20, [5, 10, 15]),
])  # fmt: skip
def test_paper_recipes_follow_spec(name, classes_epochs, steps):
    c = get_recipe(name)
    assert (c.optimizer, c.momentum, c.lr, c.lr_reference_batch, c.weight_decay) == ("sgd", 0.9, 0.01, 64, 5e-4)
    assert (c.fc_lr_mult, c.fc_bias_lr_mult, c.clip_grad_norm, c.dropout) == (5.0, 10.0, 20.0, 0.5)
    assert (c.schedule, c.lr_gamma, c.epochs, c.lr_steps) == ("step", 0.1, classes_epochs, steps)
    assert (c.pretrained, c.backbone, c.num_segments, c.image_size) == ("imagenet", "resnet50", 8, 224)


def test_paper_optimiser_groups_and_linear_lr_scaling():
    cfg = get_recipe("paper-ssv2", batch_size=128)
    model = actionlib.build_model("action", "resnet18", 7, 2)
    lr = cfg.lr * cfg.batch_size / cfg.lr_reference_batch
    opt = build_optimizer(model, cfg, lr)
    groups = {g["name"]: g for g in opt.param_groups}
    assert isinstance(opt, torch.optim.SGD) and groups["weights"]["momentum"] == 0.9
    assert groups["weights"]["lr"] == pytest.approx(0.02) and groups["weights"]["weight_decay"] == 5e-4
    assert groups["bn_and_biases"]["weight_decay"] == 0.0
    assert groups["fc_weight"]["lr"] == pytest.approx(0.1) and groups["fc_weight"]["weight_decay"] == 5e-4
    assert groups["fc_bias"]["lr"] == pytest.approx(0.2) and groups["fc_bias"]["weight_decay"] == 0.0
    bn_ids = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert bn_ids <= {id(p) for p in groups["bn_and_biases"]["params"]}
    n = sum(len(g["params"]) for g in opt.param_groups)
    assert n == len(list(model.parameters()))


def test_step_schedule_decays_at_listed_epochs():
    f = lr_factor_fn(get_recipe("paper-jester"), steps_per_epoch=10)
    assert [f(e * 10) for e in (0, 4, 5, 9, 10, 15, 24)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.001, 0.001])
    cos = lr_factor_fn(get_recipe("quick", warmup_epochs=1, epochs=4), steps_per_epoch=10)
    assert cos(0) == pytest.approx(0.1) and cos(10) == pytest.approx(1.0) and cos(40) == pytest.approx(0.0)


def test_recipes_exist_and_overrides_are_checked():
    assert {"paper-ssv2", "paper-jester", "paper-egogesture", "quick", "fast", "smoke"} <= set(recipe_names())
    assert get_recipe("quick", arch="tsn").arch == "tsn"
    with pytest.raises(ValueError, match="unknown config keys \\['lrr'\\]"):
        get_recipe("quick", lrr=0.1)
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        get_recipe("nope")
    with pytest.raises(ValueError, match="arch='resnet'.*allowed"):
        get_recipe("quick", arch="resnet")


def test_yaml_round_trip_and_errors(tmp_path):
    cfg = get_recipe("paper-egogesture", lr_steps=[3, 4])
    cfg.to_yaml(tmp_path / "c.yaml")
    assert TrainConfig.from_yaml(tmp_path / "c.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("epochs: many\n")
    with pytest.raises(ValueError, match="bad.yaml: epochs='many'"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_overrides_parse_types():
    o = parse_overrides(["lr=0.1", "lr_steps=[5,10]", "deterministic=true", "pretrained=none", "data_options={clips: 50}"])
    assert o == {"lr": 0.1, "lr_steps": [5, 10], "deterministic": True, "pretrained": None, "data_options": {"clips": 50}}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["lr"])


def test_cli_precedence_and_help_lists_every_field(tmp_path):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    text = parser.format_help()
    for name in field_names():
        assert "--" + name.replace("_", "-") in text, name
    (tmp_path / "c.yaml").write_text("lr: 0.3\nepochs: 7\n")
    args = parser.parse_args(["--recipe", "paper-jester", "--config", str(tmp_path / "c.yaml"), "--epochs", "9",
                              "--lr-steps", "2", "3", "--no-tensorboard", "--set", "seed=4"])  # fmt: skip
    cfg = resolve_train_config(args)
    assert (cfg.dataset, cfg.lr, cfg.epochs, cfg.lr_steps, cfg.tensorboard, cfg.seed) == ("jester", 0.3, 9, [2, 3], False, 4)


def test_runs_root_env(monkeypatch, tmp_path):
    from actionlib.engine.config import runs_root

    monkeypatch.setenv("ACTIONLIB_RUNS", str(tmp_path))
    assert runs_root(TrainConfig()) == tmp_path
    assert str(runs_root(TrainConfig(output_root="elsewhere"))) == "elsewhere"
    monkeypatch.delenv("ACTIONLIB_RUNS")
    assert str(runs_root(TrainConfig())) == "runs"


def test_code_identity_follows_code_not_prose(tmp_path):
    from actionlib.engine.config import code_identity

    (tmp_path / "ops").mkdir()
    src = tmp_path / "ops" / "m.py"
    src.write_text('"""Module doc."""\n\ndef f(x):\n    """Doc."""\n    return x * 2  # double\n')
    base = code_identity(tmp_path)
    src.write_text('"""Other doc."""\n\ndef f(x):\n    """Another doc."""\n    return x * 2  # twice\n')
    assert code_identity(tmp_path) == base  # docstrings and comments do not count
    src.write_text('"""Module doc."""\n\ndef f(x):\n    """Doc."""\n    return x * 3\n')
    changed = code_identity(tmp_path)
    assert changed != base  # what is computed does
    kernel = tmp_path / "ops" / "k.cpp"
    kernel.write_text("float f(float x) { return x * 3; }\n")
    assert code_identity(tmp_path) != changed  # and so does a compiled kernel's source
    compiled = code_identity(tmp_path)
    kernel.write_text("float f(float x) { return x * 4; }\n")
    assert code_identity(tmp_path) != compiled
    assert len(code_identity()) == 16  # the installed package hashes too
