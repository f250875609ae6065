"""Model behaviour: preprocessing inside the model, the cut for fine-tuning, what trains."""

from __future__ import annotations

import numpy as np
import pytest

from wastesort.config import ConfigError
from wastesort.model import (
    BackboneSpec,
    build_classifier,
    parameter_counts,
    set_fine_tuning,
    top_backbone,
)
from wastesort.preprocess import resize, resize_batch


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
    assert np.abs(np.asarray(tuned_classifier.model(resized, training=False)) - direct).max() < 1e-6


@pytest.mark.parametrize(
    "shape", [(150, 260, 3), (512, 384, 3), (7, 5, 3), (224, 224, 3), (1000, 90, 3)]
)
def test_numpy_resize_is_the_models_resizing_layer_bit_for_bit(shape):
    import keras

    raw = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    layer = keras.layers.Resizing(224, 224)
    expected = np.asarray(layer(raw[None].astype(np.float32)))[0]
    assert np.array_equal(resize(raw, 224), expected)


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
    from wastesort.training.fitting import fit

    upper = top_backbone(tuned_classifier)
    trunk_before = [w.copy() for w in tuned_classifier.trunk.get_weights()]
    top_before = [w.copy() for w in upper.get_weights()]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(24, 7, 7, 160)).astype(np.float32)
    y = np.arange(24) % 3
    set_fine_tuning(tuned_classifier, True)
    fit(
        tuned_classifier.top,
        (x, y),
        (x[:6], y[:6]),
        {"lr": 1e-3, "epochs": 1, "batch_size": 8, "patience": 1},
        tmp_path / "h.csv",
    )
    set_fine_tuning(tuned_classifier, False)
    moved = [not np.allclose(a, b) for a, b in zip(top_before, upper.get_weights())]
    assert any(moved)
    assert all(
        np.array_equal(a, b) for a, b in zip(trunk_before, tuned_classifier.trunk.get_weights())
    )


def test_cut_inside_a_residual_block_is_refused():
    with pytest.raises(
        ConfigError,
        match=r"finetune.layers=12 cuts through a residual block.*"
        r"valid values include \[0, 1, .*11, 20",
    ):
        build_classifier(3, BackboneSpec(224, None, 12))


def test_weight_average_is_what_training_keeps(tmp_path):
    """With ema_momentum near 1 the kept weights stay near the first step's, where plain Adam
    walks on: the averaged weights, not the last step's, are what fit() leaves in the model."""
    from wastesort.training.fitting import fit

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(64, 1280)).astype(np.float32), np.arange(64) % 3
    moved = {}
    for ema in (0.0, 0.999):
        head = build_classifier(3, BackboneSpec(224, None, 0), seed=3).head
        start = [w.copy() for w in head.get_weights()]
        fit(
            head,
            (x, y),
            (x[:9], y[:9]),
            {
                "lr": 1e-2,
                "epochs": 3,
                "batch_size": 8,
                "patience": 5,
                "ema_momentum": ema,
                "lr_schedule": "cosine",
            },
            tmp_path / f"{ema}.csv",
        )
        moved[ema] = sum(float(np.abs(a - b).sum()) for a, b in zip(start, head.get_weights()))
    assert 0 < moved[0.999] < 0.5 * moved[0.0]


def test_unknown_learning_rate_schedule_is_named():
    """The recipe's optimizers come from the validated sections: an unknown schedule stops
    there, named, before any training (fitting.optimizer no longer re-checks it)."""
    from wastesort import config
    from wastesort.training.recipe import recipes

    params = config.validated({})
    params["finetune"] = {**params["finetune"], "lr_schedule": "linear"}
    with pytest.raises(ConfigError, match="finetune.lr_schedule"):
        recipes(params)
    warmup, fine, last = recipes(config.validated({}))
    assert (fine.lr_schedule, fine.ema_momentum, warmup.lr_schedule) == ("cosine", 0.99, "constant")
    assert (warmup.lr, fine.lr, last.lr) == (1e-3, 3e-4, 1e-3)


def test_whole_backbone_fine_tuning_caches_resized_images():
    from wastesort.model import cache_dtype, cache_model

    spec = BackboneSpec.from_params(
        {"name": "mobilenet_v2", "image_size": 224, "weights": "none"}, {"layers": "all"}
    )
    clf = build_classifier(3, spec, seed=1)
    rng = np.random.default_rng(3)
    resized = rng.uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    # the trunk hands the resized image on unchanged; the top (scaling, backbone, head) does
    # the rest, and together they are the deployed model
    assert np.array_equal(np.asarray(cache_model(clf)(resized)), resized)
    assert cache_dtype(clf) == "uint8"
    assert np.abs(np.asarray(clf.top(resized)) - np.asarray(clf.model(resized))).max() < 1e-5
    set_fine_tuning(clf, True)
    names = [w.path for w in clf.top.trainable_weights]
    assert any(n.endswith("Conv1/kernel") for n in names)  # the stem trains too
    assert not any("_BN/" in n or "bn_Conv1/" in n for n in names)
    set_fine_tuning(clf, False)
    assert cache_dtype(build_classifier(3, BackboneSpec(224, None, 11))) == "float16"


@pytest.mark.parametrize("layers", [-1, "some", 154, True])
def test_bad_fine_tune_layers_are_named(layers):
    with pytest.raises(ConfigError, match="finetune.layers"):
        build_classifier(
            3,
            BackboneSpec.from_params(
                {"name": "mobilenet_v2", "weights": "none"}, {"layers": layers}
            ),
        )


def test_head_starts_from_the_fine_tuned_head_and_keeps_it_unless_beaten(tmp_path):
    from wastesort.training.fitting import accuracy, fit, fit_head

    rng = np.random.default_rng(4)
    centres = rng.normal(size=(3, 1280)).astype(np.float32)
    y = np.arange(90) % 3
    x = centres[y] + 0.5 * rng.normal(size=(90, 1280)).astype(np.float32)
    cfg = {"lr": 1e-3, "epochs": 5, "batch_size": 16, "patience": 5}
    tuned = build_classifier(3, BackboneSpec(224, None, 0), seed=5).head
    fit(tuned, (x, y), (x[:30], y[:30]), cfg, tmp_path / "a.csv")
    tuned.save_weights(tmp_path / "head.weights.h5")
    good = accuracy(tuned, x[:30], y[:30])
    # training that only makes it worse (on shuffled labels): the start is kept
    head = build_classifier(3, BackboneSpec(224, None, 0), seed=6).head
    result = fit_head(
        head,
        (x, rng.permutation(y)),
        (x[:30], y[:30]),
        {**cfg, "lr": 0.1},
        tmp_path / "b.csv",
        start=tmp_path / "head.weights.h5",
    )
    assert result.kept_start and result.best_val_accuracy == good
    assert all(np.array_equal(a, b) for a, b in zip(head.get_weights(), tuned.get_weights()))
    # another head shape cannot start from it and trains from scratch
    wide = build_classifier(3, BackboneSpec(224, None, 0), dense_units=64, seed=6).head
    result = fit_head(
        wide, (x, y), (x[:30], y[:30]), cfg, tmp_path / "c.csv", start=tmp_path / "head.weights.h5"
    )
    assert not result.kept_start and wide.get_weights()[0].shape == (1280, 64)


@pytest.mark.parametrize(
    "value, size", [(224, (224, 224)), ([240, 320], (240, 320)), ((96, 128), (96, 128))]
)
def test_image_size_is_a_side_or_height_and_width(value, size):
    from wastesort.preprocess import image_size

    assert image_size(value) == size
    assert BackboneSpec.from_params({"image_size": value}, {}).image_size == size


@pytest.mark.parametrize("value", [[240], [240, 320, 3], "224", 16, [240, 20], [240.0, 320], True])
def test_a_bad_image_size_names_the_field(value):
    from wastesort.preprocess import image_size

    with pytest.raises(ConfigError, match=r"backbone\.image_size must be a whole number"):
        image_size(value)


@pytest.mark.parametrize(
    "height, width, refused",
    [
        (512, 384, True),  # the old native view: a portrait input for landscape photos
        (240, 180, True),
        (384, 512, False),  # the photos' own aspect ratio
        (224, 224, False),  # square: a squash, not a swap
        (300, 512, False),
    ],
)
def test_an_input_that_swaps_the_photos_height_and_width_is_refused(height, width, refused):
    from wastesort.preprocess import check_orientation

    widths, heights = [512] * 9 + [384], [384] * 9 + [512]  # TrashNet: 512 wide, 384 high
    if refused:
        with pytest.raises(
            ConfigError,
            match=rf"backbone\.image_size is {height} high x "
            rf"{width} wide, but the photos are typically 384 high x 512 wide; "
            rf"swap them to \[{width}, {height}\]",
        ):
            check_orientation((height, width), widths, heights)
    else:
        check_orientation((height, width), widths, heights)
    check_orientation((height, width), [], [])  # nothing known: nothing to refuse


def test_non_square_resize_matches_keras():
    import keras

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(97, 61, 3)).astype(np.uint8)
    ours = resize(image, (48, 40))
    theirs = keras.layers.Resizing(48, 40)(image[None].astype(np.float32)).numpy()[0]
    assert ours.shape == (48, 40, 3)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_a_landscape_input_runs_through_the_model_and_its_tflite_file(name, tmp_path):
    import keras

    from wastesort import export
    from wastesort.keras_scoring import input_size
    from wastesort.litert import LiteModel
    from wastesort.model import cache_model

    clf = build_classifier(3, BackboneSpec((48, 64), None, 0, name), seed=3)
    assert input_size(clf.model) == (48, 64)
    assert tuple(cache_model(clf).input.shape[1:3]) == (48, 64)
    images = np.random.default_rng(4).integers(0, 256, (2, 96, 128, 3)).astype(np.float32)
    got = np.asarray(clf.model(images, training=False))
    clf.model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    lite = LiteModel(export.to_float32(loaded))
    assert lite.input_size == (48, 64)
    np.testing.assert_allclose(lite.predict(resize_batch(list(images), (48, 64))), got, atol=1e-4)
    # the arena of the two-row batch is given back; the fresh interpreter answers the same
    assert lite.release()
    np.testing.assert_allclose(
        lite.predict(resize_batch(list(images[:1]), (48, 64))), got[:1], atol=1e-4
    )
    assert not lite.release()  # a one-row arena is kept


def test_features_refuses_a_swapped_input_size_before_any_work(tmp_path, monkeypatch, capsys):
    import runpy

    import pandas as pd
    import yaml

    from tests.conftest import REPO

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["backbone"].update(image_size=[512, 384], weights="none")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data/split").mkdir(parents=True)
    for name in ("train", "val", "test"):
        pd.DataFrame(
            {
                "path": ["a/1.jpg", "b/2.jpg"],
                "label": ["a", "b"],
                "width": [512, 512],
                "height": [384, 384],
            }
        ).to_csv(tmp_path / f"data/split/{name}.csv", index=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "stages/features.py"), run_name="__main__")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "features: error: params.yaml: backbone.image_size is 512 high x 384 "
        "wide, but the photos are typically 384 high x 512 wide; swap them to "
        "[384, 512] (or use one number for a square)"
    )
    assert not (tmp_path / "data/features").exists()


def test_fit_draws_one_progress_bar_with_images_per_second(tmp_path, capsys):
    """`progress` names a bar over the whole run on stderr: every image of every epoch counted
    (the last batch of an epoch is partial), with the rate in images."""
    from wastesort.training.fitting import fit

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(70, 1280)).astype(np.float32), np.arange(70) % 3
    head = build_classifier(3, BackboneSpec(224, None, 0), seed=2).head
    cfg = {"lr": 1e-3, "epochs": 3, "batch_size": 32, "patience": 3}
    fit(head, (x, y), (x[:20], y[:20]), cfg, tmp_path / "h.csv", progress="finetune: test")
    err = capsys.readouterr().err
    assert "finetune: test" in err
    assert "210/210" in err  # 3 epochs x 70 images, in batches of 32, 32 and 6
    assert "img/s" in err
    fit(head, (x, y), (x[:20], y[:20]), cfg, tmp_path / "h2.csv")
    assert "finetune: test" not in capsys.readouterr().err  # no bar unless asked
