"""The native view: its regression folded into one Dense layer, the two-view model's
arithmetic, its save/load and TFLite round trip, and its params."""
import numpy as np
import pytest
from scipy.special import softmax

from wastesort import preprocess
from wastesort.training import native_view
from wastesort.config import ConfigError
from wastesort.training.native_view import NativeViewSpec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_fit_folds_the_standardised_regression_into_one_kernel():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    x = rng.normal(size=(120, 16)) * rng.uniform(0.1, 50, 16) + rng.normal(size=16) * 10
    x[:, :3] = y[:, None] * 4.0 + rng.normal(size=(120, 3))
    kernel, bias = native_view.fit(x, y, 3, c=0.1)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)).fit(x, y)
    np.testing.assert_allclose(native_view.logits(x, kernel, bias),
                               reference.decision_function(x), rtol=1e-4, atol=1e-4)
    assert np.mean(native_view.logits(x, kernel, bias).argmax(1) == y) > 0.9


def test_two_classes_give_two_logits_with_the_regressions_odds():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(2), 30)
    x = rng.normal(size=(60, 5)) + y[:, None] * 2.0
    kernel, bias = native_view.fit(x, y, 2, c=1.0)
    assert kernel.shape == (5, 2) and bias.shape == (2,)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(x, y)
    np.testing.assert_allclose(softmax(native_view.logits(x, kernel, bias), axis=1),
                               reference.predict_proba(x), atol=1e-5)


def test_fit_names_a_class_without_train_images():
    with pytest.raises(ConfigError, match=r"classes \[2\] have no train image"):
        native_view.fit(np.zeros((4, 3)), np.array([0, 1, 0, 1]), 3, c=1.0)


@pytest.mark.parametrize("cfg, message", [
    ({"height": 512, "width": 0}, "both be > 0"),
    ({"height": 16, "width": 16}, "at least 32 px"),
    ({"height": "big", "width": 384}, "native_view.height must be a number"),
    ({"c": 0}, "c must be > 0"),
])
def test_bad_params_name_the_field(cfg, message):
    with pytest.raises(ConfigError, match=message):
        NativeViewSpec.from_params({"height": 64, "width": 48, **cfg})


def test_off_by_default_and_with_zero_sizes():
    assert not NativeViewSpec.from_params(None).enabled
    assert not NativeViewSpec.from_params({"height": 0, "width": 0}).enabled
    assert NativeViewSpec.from_params({"height": 64, "width": 48}).size == (64, 48)


def test_two_view_model_adds_both_views_logits_and_round_trips(tmp_path):
    import keras

    from wastesort import export
    from wastesort.litert import LiteModel
    from wastesort.model import BackboneSpec, build_classifier, head_logits
    from wastesort.predict import input_size

    n, temperature, weight = 3, 1.7, 0.5
    spec = BackboneSpec(image_size=32, weights=None, fine_tune_layers=153)
    clf = build_classifier(n, spec, dense_units=8, seed=1)
    view = NativeViewSpec(height=48, width=40, weight=weight)
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(1280, n)).astype(np.float32) * 0.05
    bias = rng.normal(size=n).astype(np.float32)
    model = native_view.combined_model(clf.model, clf.head, n, view, None, (kernel, bias),
                                       temperature)
    assert input_size(model) == (48, 40)
    images = rng.uniform(0, 255, size=(4, 48, 40, 3)).astype(np.float32)

    # by hand: the fine-tuned model's pooled features at 32 px, its head's logits; the native
    # backbone's pooled features at 48 x 40 times the folded regression
    pooled = keras.Model(clf.model.input, clf.model.get_layer("pool").output)(images).numpy()
    logits_a = head_logits(clf.head, pooled)
    native_backbone = model.get_layer("native_backbone")
    native = native_backbone(images / 127.5 - 1.0).numpy()
    expected = softmax((logits_a + weight * native_view.logits(native, kernel, bias))
                       / temperature, axis=1)
    got = model.predict(images, verbose=0)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # the fine-tuned model alone still gives its own (uncalibrated) answer
    np.testing.assert_allclose(clf.model.predict(images, verbose=0), softmax(logits_a, axis=1),
                               atol=2e-5)

    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), got, atol=1e-6)
    lite = LiteModel(export.to_float32(loaded))
    assert lite.input_size == (48, 40)
    np.testing.assert_allclose(lite.predict(images), got, atol=1e-4)


def test_non_square_resize_matches_keras():
    import keras

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(97, 61, 3)).astype(np.uint8)
    ours = preprocess.resize(image, (48, 40))
    theirs = keras.layers.Resizing(48, 40)(image[None].astype(np.float32)).numpy()[0]
    assert ours.shape == (48, 40, 3)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def run_stage(work, params, monkeypatch):
    import runpy
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(work)
    runpy.run_path(str(repo / "stages" / "native_view.py"), run_name="__main__")


def repo_params():
    from pathlib import Path

    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())


def test_stage_off_records_it_and_keeps_no_stale_branch(tmp_path, monkeypatch):
    import json

    params = repo_params()
    params["native_view"].update(height=0, width=0)
    (tmp_path / "data/native_view").mkdir(parents=True)
    (tmp_path / "data/native_view/branch.npz").write_bytes(b"stale")
    run_stage(tmp_path, params, monkeypatch)
    assert json.loads((tmp_path / "metrics/native_view.json").read_text()) == {"enabled": False}
    assert not list((tmp_path / "data/native_view").glob("*.npz"))


def test_stage_refuses_a_random_backbone_in_one_line(tmp_path, monkeypatch, capsys):
    params = repo_params()
    params["backbone"]["weights"] = "none"
    params["native_view"].update(height=384, width=512)
    with pytest.raises(SystemExit) as exit_info:
        run_stage(tmp_path, params, monkeypatch)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("native_view: error: a frozen view needs trained "
                              "weights, but backbone.weights is none")


@pytest.mark.parametrize("height, width, refused", [
    (512, 384, True),    # the old default: portrait view of landscape photos
    (384, 512, False),   # the photos' own aspect ratio
    (224, 224, False),   # square: a squash, not a swap
    (300, 512, False)])
def test_a_view_that_swaps_the_photos_height_and_width_is_refused(height, width, refused):
    spec = NativeViewSpec(height=height, width=width)
    widths, heights = [512] * 9 + [384], [384] * 9 + [512]  # TrashNet: 512 wide, 384 high
    if refused:
        with pytest.raises(ConfigError, match=r"native_view is 512 high x 384 wide, but the "
                           r"photos are typically 384 high x 512 wide.*swap"):
            native_view.check_orientation(spec, widths, heights)
    else:
        native_view.check_orientation(spec, widths, heights)


def test_stage_refuses_a_swapped_view_before_any_work(tmp_path, monkeypatch, capsys):
    import pandas as pd

    params = repo_params()
    params["native_view"].update(height=512, width=384)
    (tmp_path / "data/split").mkdir(parents=True)
    for name in ("train", "val"):
        pd.DataFrame({"path": ["a/1.jpg", "b/2.jpg"], "label": ["a", "b"],
                      "width": [512, 512], "height": [384, 384]}).to_csv(
            tmp_path / f"data/split/{name}.csv", index=False)
    with pytest.raises(SystemExit):
        run_stage(tmp_path, params, monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("native_view: error: params.yaml: native_view is 512 high x 384 "
                              "wide")
