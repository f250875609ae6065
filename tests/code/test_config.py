"""Code behaviour of the params file: parameters of an earlier version are named with where
they went."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO
from wastesort import config
from wastesort.config import ConfigError, load_params


@pytest.mark.parametrize(
    "section, key, message",
    [
        (
            "finetune",
            "head_dense_units",
            "finetune.head_dense_units is no longer a parameter: it is now head.dense_units",
        ),
        ("train", "dropout", "train.dropout is no longer a parameter: it is now head.dropout"),
        (
            "finetune",
            "head_lr",
            "finetune.head_lr is no longer a parameter: it is now finetune.warmup_lr",
        ),
        ("native_view", None, "native_view is no longer a parameter: it was removed"),
    ],
)
def test_a_moved_parameter_is_named_with_its_new_place(tmp_path, section, key, message):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if key is None:
        params[section] = {"height": 0, "width": 0}
    else:
        params[section][key] = 1
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_the_repos_params_load():
    params = load_params(REPO / "params.yaml")
    assert set(params["head"]) == {"dense_units", "dropout", "label_smoothing"}


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        (
            "finetune",
            "lrr",
            1,
            "finetune.lrr is not a parameter (the finetune section has: layers, lr, lr_schedule",
        ),
        ("finetune", "lr", -1, "finetune.lr must be greater than 0 (got -1)"),
        (
            "finetune",
            "lr_schedule",
            "cosin",
            "finetune.lr_schedule must be 'constant' or 'cosine' (got 'cosin')",
        ),
        ("finetune", "layers", "most", "finetune.layers must be 'all' or a whole number >= 0"),
        ("data", "extra_paths", ["/srv/field"], "data.extra_paths must be folders inside the repo"),
        ("serve", "capture", "some", "serve.capture must be 'none', 'uncertain' or 'all'"),
        ("train", "epochs", 2.5, "train.epochs must be a valid integer"),
        (
            "backbone",
            "name",
            "resnet50",
            "backbone.name must be 'mobilenet_v2', 'efficientnet_lite0'",
        ),
        (
            "backbone",
            "image_size",
            [10, 20],
            "backbone.image_size must be a whole number of pixels "
            "(a square) or [height, width], each at least 32",
        ),
        ("serve", "min_confidence", 1.5, "serve.min_confidence must be less than or equal to 1"),
        (
            "register",
            "alias_",
            "x",
            "register.alias_ is not a parameter (the register section "
            "has: model_name, alias, max_regression)",
        ),
    ],
)
def test_a_wrong_key_type_or_range_is_one_line_naming_it(tmp_path, section, key, value, message):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError) as info:
        load_params(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {message}") and "\n" not in text


def test_an_unknown_section_lists_the_known_ones(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("trian:\n  lr: 0.1\n")
    with pytest.raises(
        ConfigError,
        match=r"'trian' is not a section of the parameters "
        r"\(known: data, validate, split",
    ):
        load_params(path)


def test_a_missing_section_or_key_takes_the_one_default(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: 0.01\n")
    params = load_params(path)
    assert params["train"]["lr"] == 0.01
    assert params["train"]["epochs"] == config.defaults("train")["epochs"] == 40
    assert params["finetune"] == config.defaults("finetune")
    # the repo's params.yaml states every default it ships with
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    assert {k: v for k, v in load_params(REPO / "params.yaml").items()} == {
        name: {**config.defaults(name), **shipped.get(name, {})} for name in shipped
    }


def test_params_yaml_states_exactly_the_typed_defaults():
    """One set of defaults: params.yaml (what DVC tracks and `-S` edits) states every key of
    every section with the value wastesort/config.py gives it, so neither can drift."""
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    defaults = config.Params().model_dump(by_alias=True)
    assert list(shipped) == list(defaults)
    for name, section in defaults.items():
        assert shipped[name] == section, name


def test_typed_sections_are_frozen_and_fill_partial_mappings():
    backbone = config.typed("backbone", {"name": "mobilenet_v2"})
    assert (backbone.name, backbone.image_size, backbone.weights) == (
        "mobilenet_v2",
        240,  # the default size, filled in
        "imagenet",
    )
    with pytest.raises(Exception):
        backbone.name = "efficientnet_lite1"
    with pytest.raises(ConfigError, match="^params.yaml: distribute.strategy must be 'none'"):
        config.typed("distribute", {"strategy": "ring"})


def test_no_code_repeats_a_default_with_get():
    """Defaults live in wastesort/config.py only: no ``cfg.get("key", default)`` on a section."""
    import ast

    offenders = []
    for path in [*(REPO / "wastesort").rglob("*.py"), *(REPO / "stages").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id
                in {"cfg", "params", "serve", "section"}
                | {f"{s}_cfg" for s in config.section_models()}
            ):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []
