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
from wastesort.config import ConfigError, load_params, section, typed

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
    serve: dict[str, Any] = field(default_factory=dict)  # the whole section (capture, review)

    @classmethod
    def load(cls, params_file: str | os.PathLike = "params.yaml") -> ServeConfig:
        if os.environ.get("WASTESORT_REVIEW_TOKEN"):
            raise ConfigError(
                "WASTESORT_REVIEW_TOKEN is now WASTESORT_INBOX_TOKEN (the page moved to /inbox)"
            )
        params = load_params(params_file)
        serve, register = section(params, "serve"), section(params, "register")
        validate = typed("validate", params.get("validate") or {})
        # WASTESORT_SERVE_MODEL overrides serve.model for one server (benchmarks, canaries)
        kind = str(os.environ.get("WASTESORT_SERVE_MODEL") or serve["model"])
        if kind not in MODEL_KINDS:
            raise ConfigError(
                f"params.yaml: serve.model must be one of {', '.join(MODEL_KINDS)}, got {kind!r}"
            )
        # WASTESORT_SERVE_CAPTURE and WASTESORT_CAPTURE_DIR: the same for serve.capture(_dir)
        overrides = {"capture": "WASTESORT_SERVE_CAPTURE", "capture_dir": "WASTESORT_CAPTURE_DIR"}
        serve = {**serve, **{k: os.environ[v] for k, v in overrides.items() if os.environ.get(v)}}
        typed("serve", serve)
        return cls(
            model_name=str(register["model_name"]),
            alias=str(register["alias"]),
            model_kind=kind,
            max_upload_bytes=int(float(serve["max_upload_mb"]) * 1024 * 1024),
            max_pixels=int(serve["max_pixels"]),
            max_batch_size=int(serve["max_batch_size"]),
            max_images_per_request=int(serve["max_images_per_request"]),
            min_side=int(validate.min_side),
            workers=int(serve["workers"]),
            tflite_threads=int(serve["tflite_threads"]),
            streams={str(k): str(v) for k, v in serve["streams"].items()},
            default_stream=str(serve["default_stream"]),
            min_confidence=float(serve["min_confidence"]),
            uncertain_stream=str(serve["uncertain_stream"]),
            serve=dict(serve),
        )

    @property
    def inbox_token(self) -> str:
        """`/inbox` is open with this token only; empty: the page is off."""
        return os.environ.get("WASTESORT_INBOX_TOKEN") or str(self.serve["inbox_token"])

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
