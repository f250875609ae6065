"""Pooling cached rows through LiteRT: the same features as Keras, and Keras wherever LiteRT
would not run what trains (mixed precision, a distribution strategy)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from wastesort import features, pooling
from wastesort.model import ALL_LAYERS, BackboneSpec, build_classifier


@pytest.mark.parametrize(
    ("name", "layers"),
    [("efficientnet_lite0", ALL_LAYERS), ("mobilenet_v2", 11)],
    ids=["lite0-resized-images", "mobilenet-v2-activations"],
)
def test_litert_pools_what_keras_pools(name, layers):
    clf = build_classifier(3, BackboneSpec((48, 64), None, layers, name), seed=4)
    rng = np.random.default_rng(0)
    resized = rng.integers(0, 256, (9, 48, 64, 3)).astype(np.uint8)
    rows = clf.trunk.predict(resized, verbose=0)  # what `features` caches at this cut
    lite = pooling.for_cpu(clf)  # float32 on the CPU, no strategy: the LiteRT file
    assert isinstance(lite, pooling.LitePooler)
    want = features.predict(clf.pooler, rows, batch_size=4)
    got = features.predict(lite, rows, batch_size=4)
    assert got.shape == want.shape == (9, clf.pooler.output.shape[-1])
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    # stored as train stores them: nearly every feature is the same float16
    assert np.mean(got.astype(np.float16) == want.astype(np.float16)) > 0.9
    # the same rows give the same features again, whatever batch they come in
    np.testing.assert_array_equal(features.predict(lite, rows, batch_size=4), got)
    np.testing.assert_allclose(lite.predict(rows[:1]), got[:1], rtol=1e-5, atol=1e-6)
    assert features.predict(lite, rows[:0]).shape == (0, got.shape[1])


def test_keras_pools_under_mixed_precision_or_a_strategy_and_litert_otherwise():
    import tensorflow as tf

    assert pooling.litert_pools()  # float32 on a CPU-only machine
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        assert not pooling.litert_pools()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        assert not pooling.litert_pools()
        clf = build_classifier(3, BackboneSpec(32, None, ALL_LAYERS, "efficientnet_lite0"), seed=1)
        assert pooling.for_cpu(clf) is clf.pooler
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert pooling.litert_pools()


def test_a_failed_conversion_is_one_line_naming_the_step():
    import dataclasses

    from wastesort.config import UserError

    clf = build_classifier(3, BackboneSpec(32, None, ALL_LAYERS, "efficientnet_lite0"), seed=1)
    # weights that do not fit the network the child process builds from the spec
    clf.spec = dataclasses.replace(clf.spec, name="mobilenet_v2")
    with pytest.raises(UserError, match="converting the pooler to LiteRT failed") as failed:
        pooling.convert_in_child(clf)
    message = str(failed.value)
    assert "\n" not in message and len(message) < 400


def test_the_frozen_pooler_is_converted_once_for_review_and_the_warm_up(tmp_path, monkeypatch):
    """`features` leaves the pooler with its fixed starting weights as a LiteRT file
    (``write_frozen``); `review` (``cached_frozen``, no TensorFlow) and the warm-up of a
    classifier built with another seed (``for_cpu``) pool through it and convert nothing. A
    seed's random weights or a cache that is pooled already get no file, and a stale one goes."""
    import dataclasses

    spec = BackboneSpec(32, "imagenet", ALL_LAYERS, "efficientnet_lite0")
    path = pooling.write_frozen(build_classifier(3, spec, seed=1), tmp_path)
    assert path == tmp_path / pooling.FROZEN and path.stat().st_size > 0

    def converted_again(_classifier):
        raise AssertionError("the frozen pooler was converted again")

    monkeypatch.setattr(pooling, "convert_in_child", converted_again)
    warm = build_classifier(4, spec, seed=42)
    resized = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype(np.uint8)
    rows = warm.trunk.predict(resized, verbose=0)
    got = features.predict(pooling.for_cpu(warm, path), rows)
    np.testing.assert_array_equal(features.predict(pooling.cached_frozen(tmp_path), rows), got)
    np.testing.assert_allclose(got, features.predict(warm.pooler, rows), rtol=1e-3, atol=1e-4)
    for other in (
        dataclasses.replace(spec, weights=None),
        dataclasses.replace(spec, fine_tune_layers=0),
    ):
        assert pooling.write_frozen(build_classifier(3, other, seed=1), tmp_path) is None, other
        assert not path.exists() and pooling.cached_frozen(tmp_path) is None
        path.write_bytes(b"stale")
