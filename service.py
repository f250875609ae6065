"""BentoML service: upload a photo of waste, get its material, confidence and recycling stream.

Two services, as BentoML 1.4 composes them: ``WasteSort`` (HTTP, upload checking, the web
page at ``/``) calls ``WasteModel``, whose batchable ``predict`` gets BentoML's adaptive
batching. The model is the registry's champion as imported into the BentoML store by the
pipeline's ``register`` stage; nothing here names a file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from wastesort import webui
from wastesort.images import ImageRejected
from wastesort.serving import (STATUS_FOR, ServeConfig, UploadGuard, check_upload, describe,
                               error_body, load_champion)

CFG = ServeConfig.load()


@bentoml.service(name="wastesort_model", workers=1, traffic={"timeout": 60})
class WasteModel:
    """The champion's forward pass (TFLite fp32), on batches of resized images."""

    bento_model = bentoml.models.BentoModel(f"{CFG.model_name}:latest")

    def __init__(self) -> None:
        self.champion = load_champion(CFG, self.bento_model)

    @bentoml.api(batchable=True, max_batch_size=CFG.max_batch_size,
                 max_latency_ms=CFG.max_latency_ms)
    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.champion.predict(batch)

    @bentoml.api
    def about(self) -> dict[str, Any]:
        c = self.champion
        return {"model": c.tag, "labels": c.labels, "image_size": c.image_size,
                "test_accuracy": c.metadata.get("test_accuracy")}


@bentoml.asgi_app(webui.app, path="/")
@bentoml.service(name="wastesort", traffic={"timeout": 60})
class WasteSort:
    """Upload checking and answers; the page at `/`, BentoML's OpenAPI page at `/docs`."""

    model = bentoml.depends(WasteModel)

    def __init__(self) -> None:
        from wastesort.features import resize_batch

        self._about: dict[str, Any] | None = None
        # import TensorFlow and build the resize layer now, before /readyz, not on the first
        # upload (that made the first answer take about 10 s)
        resize_batch([np.zeros((4, 4, 3), np.float32)], CFG.image_size)

    def about_model(self) -> dict[str, Any]:
        if self._about is None:
            self._about = self.model.about()
        return self._about

    def answer(self, batch: np.ndarray) -> list[dict[str, Any]]:
        labels = self.about_model()["labels"]
        return [describe(labels, p, CFG) for p in np.asarray(self.model.predict(batch))]

    def prepare(self, uploads: list[tuple[str, Path]]) -> np.ndarray:
        from wastesort.features import resize_batch

        decoded = [check_upload(path.read_bytes(), CFG, field).array() for field, path in uploads]
        return resize_batch(decoded, self.about_model()["image_size"])

    @bentoml.api(route="/classify")
    def classify(self, image: Path, ctx: bentoml.Context) -> dict[str, Any]:
        """Classify one photo (multipart form field `image`)."""
        try:
            batch = self.prepare([("image", image)])
        except ImageRejected as exc:
            ctx.response.status_code = STATUS_FOR[exc.code]
            return error_body(exc)
        return self.answer(batch)[0]

    @bentoml.api(route="/classify_batch")
    def classify_batch(self, images: list[Path], ctx: bentoml.Context) -> dict[str, Any]:
        """Classify several photos (repeat the form field `images`), answers in upload order."""
        if not images:
            ctx.response.status_code = 400
            return {"error": "images: no files uploaded", "code": "empty"}
        try:
            batch = self.prepare([(f"images[{i}] ({p.name})", p) for i, p in enumerate(images)])
        except ImageRejected as exc:
            ctx.response.status_code = STATUS_FOR[exc.code]
            return error_body(exc)
        return {"results": [{"index": i, **r} for i, r in enumerate(self.answer(batch))]}


FORM_OVERHEAD = 64 * 1024
WasteSort.add_asgi_middleware(
    UploadGuard, fields={"/classify": "image", "/classify_batch": "images"},
    max_body_bytes={"/classify": CFG.max_upload_bytes + FORM_OVERHEAD,
                    "/classify_batch": CFG.max_batch_size * CFG.max_upload_bytes + FORM_OVERHEAD})
