"""Benchmark: what a changed or added view would give finished pipeline runs, without training.

A fine-tuning costs 15-20 minutes per split seed; a view fitted on frozen features costs
seconds. So for each pipeline work folder given (`benchmarks/pipeline.py --workdir`, or the
temporary folder it prints; `models/model.keras` must be the two-view model), this scores on
that run's own val and test photos:

- the run's fine-tuned view alone (the saved model's `logits_fine_tuned`, times its temperature);
- plus the native view as `native_view` builds it: the frozen ImageNet MobileNetV2 at
  `native_view.height` x `width`, average-pooled, a logistic regression at `native_view.c`
  fitted on the train photos (this row reproduces the run's own test accuracy: a check);
- plus that view changed: pooled otherwise (GeM with p = 3, max, the means of a 2 x 2 grid, the
  mean of `block_16_project_BN` beside the average), averaged over the photo and its mirror
  image, or an RBF SVM (scikit-learn `SVC`, sigmoid-calibrated by cross-validation) in place of
  the regression;
- plus a third view: the run's own fine-tuned backbone run at the native size (FixRes), with a
  regression on its average-pooled features of the train photos;
- when two folders hold the same split: their two fine-tuned views summed, with the native view.

Logits are summed with equal weights, as the saved model does. Choose on val; test is shown
beside it. CPU: the frozen features of every photo once (two forward passes each, at the native
size), then one native-size pass of each run's backbone over its split.

    uv run python benchmarks/views.py /tmp/wastesort-bench-*/repo \\
        --out benchmarks/results/views.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from pipeline import cpu_model  # noqa: E402

SPLITS = ("train", "val", "test")
POOLINGS = ("gem3", "max", "grid", "gap+block16", "gap, mirror-averaged")


def load_run(folder: Path) -> dict:
    import pandas as pd

    params = yaml.safe_load((folder / "params.yaml").read_text())
    classes = json.loads((folder / "models/labels.json").read_text())
    run = {"folder": folder, "params": params, "classes": classes,
           "root": (folder / params["data"]["path"]).resolve(),
           "max_pixels": int(params["validate"]["max_pixels"]),
           "temperature": json.loads((folder / "models/calibration.json").read_text())
           ["temperature"]}
    for split in SPLITS:
        frame = pd.read_csv(folder / f"data/split/{split}.csv").sort_values("path")
        run[split] = (frame["path"].tolist(),
                      np.array([classes.index(label) for label in frame["label"]]))
    return run


def batches(root: Path, paths: list[str], size: tuple[int, int], max_pixels: int, n: int = 16,
            unit_range: bool = True):
    """The photos through the one preprocessing path; [-1, 1] as MobileNetV2 takes them, or the
    raw pixels the saved model takes."""
    from wastesort.features import load_resized

    for start in range(0, len(paths), n):
        batch = load_resized(root, paths[start:start + n], size, max_pixels)
        yield batch / 127.5 - 1.0 if unit_range else batch


def frozen_features(root: Path, paths: list[str], size: tuple[int, int], max_pixels: int
                    ) -> dict[str, dict]:
    """Per photo: the frozen ImageNet MobileNetV2's last activations pooled several ways."""
    import keras

    net = keras.applications.MobileNetV2(input_shape=(*size, 3), include_top=False,
                                         weights="imagenet")
    maps = keras.Model(net.input, [net.get_layer("out_relu").output,
                                   net.get_layer("block_16_project_BN").output])
    out = {}
    for start, batch in zip(range(0, len(paths), 16), batches(root, paths, size, max_pixels)):
        last, b16 = (np.asarray(t, np.float32) for t in maps(batch, training=False))
        mirrored = np.asarray(maps(batch[:, :, ::-1], training=False)[0], np.float32)
        h, w = last.shape[1] // 2, last.shape[2] // 2
        pooled = {
            "gap": last.mean((1, 2)),
            "gem3": np.cbrt((np.maximum(last, 0) ** 3).mean((1, 2))),
            "max": last.max((1, 2)),
            "grid": np.concatenate([last[:, i * h:(i + 1) * h, j * w:(j + 1) * w].mean((1, 2))
                                    for i in (0, 1) for j in (0, 1)], 1),
            "gap+block16": np.concatenate([last.mean((1, 2)), b16.mean((1, 2))], 1),
            "gap, mirror-averaged": (last.mean((1, 2)) + mirrored.mean((1, 2))) / 2,
        }
        for i, path in enumerate(paths[start:start + 16]):
            out[path] = {k: v[i] for k, v in pooled.items()}
    return out


def fine_tuned_views(run: dict, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The run's fine-tuned view's logits on val and test (times T: before the temperature),
    and its backbone's pooled features at ``size`` on every split (None unless the whole
    backbone was fine-tuned)."""
    import keras

    model = keras.models.load_model(run["folder"] / "models/model.keras", compile=False)
    fine_tuned = keras.Model(model.input, model.get_layer("logits_fine_tuned").output)
    out = {}
    for split in ("val", "test"):
        out[f"logits_{split}"] = np.concatenate([
            np.asarray(fine_tuned(b, training=False)) * run["temperature"]
            for b in batches(run["root"], run[split][0], size, run["max_pixels"], 32,
                             unit_range=False)])
    top = model.get_layer("backbone_top")
    if top.input.shape[-1] != 3:  # fine-tuned above a cut: no whole backbone to rerun
        return out
    at_size = keras.applications.MobileNetV2(input_shape=(*size, 3), include_top=False,
                                             weights=None)
    at_size.set_weights(top.get_weights())
    for split in SPLITS:
        out[f"fixres_{split}"] = np.concatenate([
            np.asarray(at_size(b, training=False), np.float32).mean((1, 2))
            for b in batches(run["root"], run[split][0], size, run["max_pixels"])])
    return out


def regression(train_x, train_y, c: float, n_classes: int):
    """The native view's own regression (``native_view.fit``, folded as the saved model holds
    it), as a function from features to logits."""
    from wastesort.training import native_view

    kernel, bias = native_view.fit(train_x, train_y, n_classes, c)
    return lambda x: native_view.logits(x, kernel, bias)


def svm(train_x, train_y, c: float):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    scaler = StandardScaler().fit(train_x)
    model = CalibratedClassifierCV(SVC(C=c), ensemble=False).fit(scaler.transform(train_x),
                                                                 train_y)
    return lambda x: np.log(model.predict_proba(scaler.transform(x)) + 1e-9)


def score_run(run: dict, frozen: dict, views: dict, c_values: list[float], svm_c: float,
              other: dict | None) -> dict[str, tuple[float, float]]:
    def stack(split, kind):
        return np.stack([frozen[p][kind] for p in run[split][0]])

    y = {split: run[split][1] for split in SPLITS}
    fine = {split: views[f"logits_{split}"] for split in ("val", "test")}
    rows = {}

    def add(name, extra):
        rows[name] = tuple(round(float(np.mean((fine[s] + extra[s]).argmax(1) == y[s])), 4)
                           for s in ("val", "test"))

    add("fine-tuned view alone", {s: 0.0 for s in fine})
    c_run = float(run["params"]["native_view"]["c"])
    n_classes = len(run["classes"])
    native = regression(stack("train", "gap"), y["train"], c_run, n_classes)
    native_logits = {s: native(stack(s, "gap")) for s in fine}
    add(f"+ native view (the pipeline's: average pool, regression C {c_run:g})", native_logits)
    for c in c_values:
        if c != c_run:
            f = regression(stack("train", "gap"), y["train"], c, n_classes)
            add(f"+ native view, regression C {c:g}", {s: f(stack(s, "gap")) for s in fine})
    for kind in POOLINGS:
        f = regression(stack("train", kind), y["train"], c_run, n_classes)
        add(f"+ native view pooled: {kind}", {s: f(stack(s, kind)) for s in fine})
    f = svm(stack("train", "gap"), y["train"], svm_c)
    add(f"+ native view as an RBF SVM (C {svm_c:g})", {s: f(stack(s, "gap")) for s in fine})
    if "fixres_train" in views:
        for c in c_values:
            f = regression(views["fixres_train"], y["train"], c, n_classes)
            fixres = {s: f(views[f"fixres_{s}"]) for s in fine}
            add(f"+ native view + fine-tuned backbone at native size (regression C {c:g})",
                {s: native_logits[s] + fixres[s] for s in fine})
    if other is not None:
        add("+ native view + the other run's fine-tuned view",
            {s: native_logits[s] + other[f"logits_{s}"] for s in fine})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="pipeline work folders (repo/)")
    ap.add_argument("--c", type=float, nargs="+", default=[0.003, 0.01, 0.03],
                    help="regression strengths to try")
    ap.add_argument("--svm-c", type=float, default=3.0)
    ap.add_argument("--names", nargs="+",
                    help="a column name per folder (default: its split seed)")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args()

    from wastesort import stage

    stage.load_tensorflow()
    started = time.perf_counter()
    runs = [load_run(folder.resolve()) for folder in args.folders]
    sizes = {(int(r["params"]["native_view"]["height"]), int(r["params"]["native_view"]["width"]))
             for r in runs}
    roots = {r["root"] for r in runs}
    if len(sizes) != 1 or len(roots) != 1 or 0 in next(iter(sizes)):
        sys.exit("views: the folders must share one data folder and one native_view size (> 0)")
    size, root = sizes.pop(), roots.pop()
    paths = sorted({p for r in runs for split in SPLITS for p in r[split][0]})
    print(f"views: frozen features of {len(paths)} photos at {size[0]} x {size[1]}", flush=True)
    # every path passed its own run's limit, so the largest admits them all
    frozen = frozen_features(root, paths, size, max(r["max_pixels"] for r in runs))
    views = []
    for r in runs:
        print(f"views: {r['folder']}", flush=True)
        views.append(fine_tuned_views(r, size))
    results = []
    for i, r in enumerate(runs):
        twin = next((j for j, o in enumerate(runs) if j != i and o["test"][0] == r["test"][0]
                     and o["train"][0] == r["train"][0]), None)
        rows = score_run(r, frozen, views[i], args.c, args.svm_c,
                         views[twin] if twin is not None else None)
        name = args.names[i] if args.names and i < len(args.names) else \
            f"seed {r['params']['split']['seed']}"
        results.append({"folder": str(r["folder"]), "name": name,
                        "split_seed": r["params"]["split"]["seed"], "rows": rows})
    row_names = list(dict.fromkeys(n for res in results for n in res["rows"]))
    header = " | ".join(f"{res['name']}: val / test" for res in results)
    print(f"\nCPU: {cpu_model()}; {time.perf_counter() - started:.0f} s\n")
    print(f"| view | {header} | mean val / test |")
    print("|---|" + "---|" * (len(results) + 1))
    for row in row_names:
        cells = [res["rows"].get(row) for res in results]
        have = [c for c in cells if c]
        mean = tuple(round(float(np.mean([c[k] for c in have])), 4) for k in (0, 1))
        print(f"| {row} | " + " | ".join(f"{c[0]:.4f} / {c[1]:.4f}" if c else "" for c in cells)
              + f" | {mean[0]:.4f} / {mean[1]:.4f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"cpu": cpu_model(), "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
