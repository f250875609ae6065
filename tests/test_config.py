"""Code behaviour of the params file: parameters of an earlier version are named with where
they went."""
from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO
from wastesort.config import ConfigError, load_params


@pytest.mark.parametrize("section, key, message", [
    ("finetune", "head_dense_units", "finetune.head_dense_units is no longer a parameter: it "
                                     "is now head.dense_units"),
    ("train", "dropout", "train.dropout is no longer a parameter: it is now head.dropout"),
    ("finetune", "head_lr", "finetune.head_lr is no longer a parameter: it is now "
                            "finetune.warmup_lr"),
    ("native_view", None, "native_view is no longer a parameter: it was removed")])
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
