"""DVC stage `review`: rank every accepted image by how likely its label is wrong (a report
only; the data and the split are never changed)."""

from wastesort import artifacts, config, paths, pooling, stage
from wastesort.data import review

FEATURES = paths.FEATURES
REPORT_DIR = paths.report("review")
METRICS = paths.metrics("review.json")


def main() -> None:
    params = config.load_params()
    cfg = config.typed("review", params["review"])
    max_pixels = config.typed("validate", params["validate"]).max_pixels
    root = config.data_root(params)
    data = review.load_originals(FEATURES)
    # the backbone above the cache's cut, still with its ImageNet weights: the cached rows
    # run through it, and no photo is decoded again; `features` left it as a LiteRT file
    pooler = pooling.cached_frozen(FEATURES) or built_pooler(params)
    batch_size = config.typed("backbone", params["backbone"]).batch_size
    feats = review.frozen_features(pooler, data["features"], batch_size)
    table, metrics = review.review(feats, data, cfg)
    review.write_report(root, table, metrics, cfg.top, REPORT_DIR, max_pixels)
    artifacts.write_json(METRICS, metrics)
    print(
        f"review: {metrics['n_suspects']} of {metrics['n_images']} labels flagged (out-of-fold "
        f"accuracy {metrics['oof_accuracy']:.3f}); report: {REPORT_DIR / 'report.md'}"
    )


def built_pooler(params):
    """The pooler built with TensorFlow, where the cache has no file of it (random weights, a
    GPU, or a cache already pooled)."""
    stage.load_tensorflow()
    from wastesort.model import BackboneSpec, build_classifier

    spec = BackboneSpec.from_params(params["backbone"], params["finetune"])
    return pooling.for_cpu(build_classifier(2, spec))


if __name__ == "__main__":
    stage.run("review", main)
