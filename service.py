"""BentoML service: upload a photo of waste, get its material, confidence and recycling stream.

One service, no TensorFlow: each API thread decodes and resizes its upload
(``preprocess.load_for_model``) and hands the array to the in-process adaptive batcher, which
runs the registered TFLite file under LiteRT. The model is exactly the version the MLflow
registry's alias (``champion``) points at; if its files are missing or differ, `bentoml serve`
stops with one line that says what to run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from wastesort import webui
from wastesort.config import ConfigError
from wastesort.field.capture import Capture
from wastesort.images import ImageRejected
from wastesort.serving import (
    STATUS_FOR,
    Batcher,
    ServeConfig,
    UploadGuard,
    bento_entry,
    describe,
    error_body,
    load_champion,
    load_upload,
    resolve_once,
)
from wastesort.serving.guard import SENT_FIELD_HEADER
from wastesort.serving.heap import keep_request_buffers
from wastesort.serving.metrics import ServiceMetrics

try:
    CFG = ServeConfig.load()
    CHAMPION = resolve_once(CFG)
    bento_entry(CHAMPION)
except ConfigError as exc:
    sys.exit(f"wastesort: error: {exc}")


@bentoml.asgi_app(webui.app, path="/")
@bentoml.service(name="wastesort", workers=CFG.workers, traffic={"timeout": 60})
class WasteSort:
    """Upload checking, batching and answers; the page at `/`, the OpenAPI page at `/docs`."""

    bento_model = bentoml.models.BentoModel(CHAMPION.bento_tag)  # `bentoml build` packs it

    def __init__(self) -> None:
        global METRICS
        keep_request_buffers()  # each worker: a photo's arrays from the heap, not fresh mmaps
        self.champion = load_champion(CFG, CHAMPION, self.bento_model)
        # after a quiet spell the model gives back the memory of its largest batch
        self.batcher = Batcher(
            self.champion.predict, CFG.max_batch_size, on_idle=self.champion.model.release
        )
        self.model_info = self.champion.info()
        self.metrics = METRICS = ServiceMetrics.create(self.model_info)
        self.capture = Capture.from_params(
            CFG.serve,
            on_miss=lambda reason: self.metrics.capture_missed.labels(reason).inc(),
            on_kept=lambda kind: self.metrics.captured.labels(kind).inc(),
        )
        self.batcher(
            np.zeros((1, *self.champion.input_size, 3), np.float32)
        )  # warm the interpreter up before /readyz

    def answer(self, uploads: list[tuple[str, Path]]) -> list[dict[str, Any]]:
        size = self.champion.input_size
        data = [path.read_bytes() for _, path in uploads]
        batch = np.stack([load_upload(d, CFG, size, f) for d, (f, _) in zip(data, uploads)])
        answers = [
            describe(self.champion.labels, p, CFG, self.model_info) for p in self.batcher(batch)
        ]
        for upload, answer in zip(data, answers):
            self.metrics.answered(answer)
            self.capture.submit(upload, answer)  # written after the answer leaves
        return answers

    def rejected(self, exc: ImageRejected, ctx: bentoml.Context) -> dict[str, str]:
        self.metrics.reject(exc.code)
        ctx.response.status_code = STATUS_FOR[exc.code]
        return error_body(exc)

    def one(self, field: str, image: Path, ctx: bentoml.Context) -> dict[str, Any]:
        try:
            return self.answer([(field, image)])[0]
        except ImageRejected as exc:
            return self.rejected(exc, ctx)

    @bentoml.api(route="/classify")
    def classify(self, image: Path, ctx: bentoml.Context) -> dict[str, Any]:
        """Classify one photo (multipart form field `image`)."""
        return self.one("image", image, ctx)

    @bentoml.api(route="/predict")
    def predict(self, file: Path, ctx: bentoml.Context) -> dict[str, Any]:
        """`/classify` for clients of the usual Flask waste classifiers: one photo in the
        multipart field `file` or `image` (curl -F file=@photo.jpg)."""
        return self.one(ctx.request.headers.get(SENT_FIELD_HEADER, "file"), file, ctx)

    @bentoml.api(route="/classify_batch")
    def classify_batch(self, images: list[Path], ctx: bentoml.Context) -> dict[str, Any]:
        """Classify several photos (repeat the form field `images`), answers in upload order."""
        if not images:
            return self.rejected(ImageRejected("images: no files uploaded", "empty"), ctx)
        try:
            answers = self.answer([(f"images[{i}] ({p.name})", p) for i, p in enumerate(images)])
        except ImageRejected as exc:
            return self.rejected(exc, ctx)
        return {"results": [{"index": i, **r} for i, r in enumerate(answers)]}

    @bentoml.api(route="/about")
    def about(self) -> dict[str, Any]:
        """The served model: registry name, version, alias, file format, labels, input size."""
        return {
            **self.model_info,
            "labels": self.champion.labels,
            "input_size": list(self.champion.input_size),
            "test_accuracy": self.champion.metadata.get("test_accuracy"),
        }


METRICS: ServiceMetrics | None = None  # the worker's, once WasteSort has started


def count_rejection(code: str) -> None:
    if METRICS is not None:
        METRICS.reject(code)


FORM_OVERHEAD = 64 * 1024
WasteSort.add_asgi_middleware(
    UploadGuard,
    fields={"/classify": ("image",), "/predict": ("file", "image"), "/classify_batch": ("images",)},
    max_body_bytes={
        "/classify": CFG.max_upload_bytes + FORM_OVERHEAD,
        "/predict": CFG.max_upload_bytes + FORM_OVERHEAD,
        "/classify_batch": CFG.max_images_per_request * CFG.max_upload_bytes + FORM_OVERHEAD,
    },
    on_reject=count_rejection,
    max_files={"/classify_batch": (CFG.max_images_per_request, "serve.max_images_per_request")},
    no_input=("/about",),
)
