"""DVC stage `native_view`: the frozen ImageNet MobileNetV2 at the photos' own resolution over
the train and val splits, and a logistic regression on its pooled train features.

`train` adds this view's logits to the fine-tuned model's (see
``wastesort.training.native_view``). With native_view.height and width 0 the stage records that
the view is off.
"""
from pathlib import Path

from wastesort import config, stage

OUT_DIR = Path("data/native_view")


def main() -> None:
    params = config.load_params()
    from wastesort.training.native_view import NativeViewSpec

    spec = NativeViewSpec.from_params(params.get("native_view"))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUT_DIR.glob("*.npz"):
        old.unlink()
    if not spec.enabled:
        from wastesort import artifacts

        artifacts.write_json("metrics/native_view.json", {"enabled": False})
        print("native_view: off (native_view.height and width are 0)")
        return
    stage.load_tensorflow()
    fit_view(params, spec)


def fit_view(params: dict, spec) -> None:
    import time

    import numpy as np

    from wastesort import artifacts
    from wastesort.training import fitting, native_view
    from wastesort.model import BackboneSpec

    weights = BackboneSpec.from_params(config.section(params, "backbone"),
                                       config.section(params, "finetune")).weights
    if weights is None:
        raise config.ConfigError("a frozen view needs trained weights, but "
                                 "backbone.weights is none; set native_view.height and width "
                                 "to 0 to turn the view off")
    root = config.data_root(params)
    max_pixels = int(config.section(params, "validate")["max_pixels"])
    split = {name: artifacts.read_manifest(f"data/split/{name}.csv") for name in ("train", "val")}
    native_view.check_orientation(spec, split["train"].get("width", []),
                                  split["train"].get("height", []))
    classes = fitting.class_order(config.configured_classes(params),
                                  split["train"]["label"].to_numpy())
    net = native_view.backbone(spec, weights)
    data, started, n_images = {}, time.perf_counter(), 0
    for name, frame in split.items():
        features = native_view.extract(net, root, frame["path"].tolist(), spec, max_pixels,
                                       progress=f"native_view {name}")
        y = fitting.encode_labels(frame["label"].to_numpy(), classes, name)
        data[name] = (features, y)
        n_images += len(frame)
        np.savez_compressed(OUT_DIR / f"{name}.npz", features=features.astype(np.float16),
                            y=y, paths=frame["path"].to_numpy(str))
    seconds = time.perf_counter() - started
    kernel, bias = native_view.fit(*data["train"], len(classes), spec.c)
    np.savez(OUT_DIR / "branch.npz", kernel=kernel, bias=bias, classes=np.array(classes))
    val_features, y_val = data["val"]
    val_accuracy = float(np.mean(native_view.logits(val_features, kernel, bias).argmax(1) == y_val))
    summary = {"enabled": True, "height": spec.height, "width": spec.width, "c": spec.c,
               "val_accuracy": round(val_accuracy, 6), "n_train": int(len(data["train"][1])),
               "seconds_features": round(seconds, 1),
               "images_per_second": round(n_images / seconds, 2)}
    artifacts.write_json("metrics/native_view.json", summary)
    print(f"native_view: {spec.height}x{spec.width} px, {n_images} images at "
          f"{summary['images_per_second']} images/s; the view alone scores "
          f"{val_accuracy:.4f} on val")


if __name__ == "__main__":
    stage.run("native_view", main)
