"""Model behaviour: preprocessing inside the model, the cut for fine-tuning, what trains."""
from __future__ import annotations

import numpy as np
import pytest

from wastesort.config import ConfigError
from wastesort.features import resize_batch
from wastesort.model import (BackboneSpec, build_classifier, parameter_counts, set_fine_tuning,
                             top_backbone)


@pytest.fixture(scope="module")
def tuned_classifier():
    return build_classifier(3, BackboneSpec(224, None, 11), seed=1)


def test_parameter_counts_for_seven_classes():
    counts = parameter_counts(build_classifier(7, BackboneSpec(224, None, 0)).model)
    assert counts["params_frozen"] == 2_257_984  # MobileNetV2 without its top
    assert counts["params_trainable"] == 1280 * 128 + 128 + 128 * 7 + 7


def test_raw_pixels_of_any_size_in_probabilities_out(tuned_classifier):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (1, 150, 260, 3)).astype(np.float32)
    direct = np.asarray(tuned_classifier.model(raw, training=False))
    assert direct.shape == (1, 3) and direct.sum() == pytest.approx(1.0, abs=1e-5)
    # resizing first with the model's own op (what serving does) changes nothing
    resized = resize_batch([raw[0]], 224)
    assert np.abs(np.asarray(tuned_classifier.model(resized, training=False)) - direct).max() \
        < 1e-6


def test_fine_tuning_unfreezes_the_top_layers_but_not_batchnorm(tuned_classifier):
    top = tuned_classifier.top
    frozen = len(top.trainable_weights)
    set_fine_tuning(tuned_classifier, True)
    names = [w.path for w in top.trainable_weights]
    assert any("block_16_expand/kernel" in n for n in names)
    assert any("Conv_1/kernel" in n for n in names)
    assert not any("_BN/" in n or "_bn/" in n for n in names)
    set_fine_tuning(tuned_classifier, False)
    assert len(top.trainable_weights) == frozen == 4  # the head's two Dense layers


def test_fine_tuning_moves_top_weights_and_leaves_the_trunk(tuned_classifier, tmp_path):
    from wastesort.training import fit

    upper = top_backbone(tuned_classifier)
    trunk_before = [w.copy() for w in tuned_classifier.trunk.get_weights()]
    top_before = [w.copy() for w in upper.get_weights()]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(24, 7, 7, 160)).astype(np.float32)
    y = np.arange(24) % 3
    set_fine_tuning(tuned_classifier, True)
    fit(tuned_classifier.top, (x, y), (x[:6], y[:6]),
        {"lr": 1e-3, "epochs": 1, "batch_size": 8, "patience": 1}, tmp_path / "h.csv")
    set_fine_tuning(tuned_classifier, False)
    moved = [not np.allclose(a, b) for a, b in zip(top_before, upper.get_weights())]
    assert any(moved)
    assert all(np.array_equal(a, b) for a, b in
               zip(trunk_before, tuned_classifier.trunk.get_weights()))


def test_cut_inside_a_residual_block_is_refused():
    with pytest.raises(ConfigError, match=r"finetune.layers=12 cuts through a residual block.*"
                                          r"valid values include \[0, 1, .*11, 20"):
        build_classifier(3, BackboneSpec(224, None, 12))
