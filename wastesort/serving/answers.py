"""The service's settings (``ServeConfig``, from ``serve`` in params.yaml), one upload as the
model's input (``load_upload``) and one answer (``describe``), for ``service.py``, the CLI and
``wastesort evaluate FOLDER`` alike."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import numpy as np

from wastesort import images, preprocess
from wastesort.config import ConfigError, Serve, load_params, typed

#: What an upload problem answers over HTTP.
STATUS_FOR = {
    "empty": HTTPStatus.BAD_REQUEST,
    "too_large": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    "bomb": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    "too_many": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    "too_small": HTTPStatus.UNPROCESSABLE_ENTITY,
    "not_image": HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    "unsupported": HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    "corrupt": HTTPStatus.UNPROCESSABLE_ENTITY,
    "mode": HTTPStatus.UNPROCESSABLE_ENTITY,
}
MODEL_KINDS = ("float32", "int8")


@dataclass(frozen=True)
class ServeConfig:
    model_name: str
    alias: str
    model_kind: str
    max_upload_bytes: int
    max_pixels: int
    max_batch_size: int
    max_images_per_request: int
    min_side: int  # validate.min_side: the service refuses what the pipeline would
    workers: int
    tflite_threads: int
    streams: dict[str, str]
    default_stream: str
    min_confidence: float = 0.0
    uncertain_stream: str = "manual_check"
    serve: Serve = field(default_factory=Serve)  # the whole section (capture, inbox)

    @classmethod
    def load(cls, params_file: str | os.PathLike = "params.yaml") -> ServeConfig:
        if os.environ.get("WASTESORT_REVIEW_TOKEN"):
            raise ConfigError(
                "WASTESORT_REVIEW_TOKEN is now WASTESORT_INBOX_TOKEN (the page moved to /inbox)"
            )
        params = load_params(params_file)
        # for one server (benchmarks, canaries): WASTESORT_SERVE_MODEL overrides serve.model,
        # WASTESORT_SERVE_CAPTURE and WASTESORT_CAPTURE_DIR serve.capture(_dir); checked as
        # params.yaml's values are
        overrides = {
            "model": "WASTESORT_SERVE_MODEL",
            "capture": "WASTESORT_SERVE_CAPTURE",
            "capture_dir": "WASTESORT_CAPTURE_DIR",
        }
        serve = typed(
            "serve",
            {
                **params["serve"],
                **{k: os.environ[v] for k, v in overrides.items() if os.environ.get(v)},
            },
        )
        register = typed("register", params["register"])
        return cls(
            model_name=register.model_name,
            alias=register.alias,
            model_kind=serve.model,
            max_upload_bytes=int(serve.max_upload_mb * 1024 * 1024),
            max_pixels=serve.max_pixels,
            max_batch_size=serve.max_batch_size,
            max_images_per_request=serve.max_images_per_request,
            min_side=typed("validate", params["validate"]).min_side,
            workers=serve.workers,
            tflite_threads=serve.tflite_threads,
            streams=dict(serve.streams),
            default_stream=serve.default_stream,
            min_confidence=serve.min_confidence,
            uncertain_stream=serve.uncertain_stream,
            serve=serve,
        )

    @property
    def inbox_token(self) -> str:
        """`/inbox` is open with this token only; empty: the page is off."""
        return os.environ.get("WASTESORT_INBOX_TOKEN") or self.serve.inbox_token

    def stream_for(self, label: str) -> str:
        return self.streams.get(label, self.default_stream)


def load_upload(
    data: bytes, cfg: ServeConfig, size: preprocess.Size, field: str = ""
) -> np.ndarray:
    """One upload as the model's input, or ``ImageRejected`` with a reason naming the field."""
    prefix = f"{field}: " if field else ""
    if len(data) > cfg.max_upload_bytes:
        raise images.ImageRejected(
            f"{prefix}upload of {len(data):,} bytes is over the limit of "
            f"{cfg.max_upload_bytes:,} bytes (serve.max_upload_mb)",
            "too_large",
        )
    try:
        return preprocess.load_for_model(data, cfg.max_pixels, size, cfg.min_side)
    except images.ImageRejected as exc:
        setting = {"bomb": " (serve.max_pixels)", "too_small": " (validate.min_side)"}
        raise images.ImageRejected(
            prefix + exc.reason + setting.get(exc.code, ""), exc.code
        ) from None


def describe(
    labels: list[str], probabilities: np.ndarray, cfg: ServeConfig, model: dict[str, str]
) -> dict[str, Any]:
    """The answer for one image, as the service and the CLI give it, naming the model. Under
    ``serve.min_confidence`` it is ``uncertain`` and goes to ``serve.uncertain_stream``."""
    best = int(np.argmax(probabilities))
    confidence = float(probabilities[best])
    uncertain = confidence < cfg.min_confidence
    return {
        "label": labels[best],
        "confidence": confidence,
        "uncertain": uncertain,
        "stream": cfg.uncertain_stream if uncertain else cfg.stream_for(labels[best]),
        "probabilities": {c: float(p) for c, p in zip(labels, probabilities)},
        "model": model,
    }


def error_body(exc: images.ImageRejected) -> dict[str, str]:
    return {"error": exc.reason, "code": exc.code}
