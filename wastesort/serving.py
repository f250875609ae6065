"""Serving the champion: load it from the BentoML store, check uploads, run it with TFLite.

Shared by ``service.py`` and the ``wastesort predict`` CLI, so both load the same model the
same way and preprocess identically (``images.decode``, then the model's own resize op).
The forward pass runs on a TFLite (XNNPACK) conversion of the Keras model, several times
faster than Keras on a CPU; the conversion is cached next to the model in the store.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np

from wastesort import images
from wastesort.config import ConfigError, load_params, section

#: What an upload problem answers over HTTP.
STATUS_FOR = {"empty": HTTPStatus.BAD_REQUEST, "too_large": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
              "bomb": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
              "not_image": HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
              "unsupported": HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
              "corrupt": HTTPStatus.UNPROCESSABLE_ENTITY, "mode": HTTPStatus.UNPROCESSABLE_ENTITY}


@dataclass(frozen=True)
class ServeConfig:
    model_name: str
    max_upload_bytes: int
    max_pixels: int
    max_batch_size: int
    max_latency_ms: int
    tflite_threads: int
    streams: dict[str, str]
    default_stream: str
    image_size: int = 224  # backbone.image_size, to warm the resize up (the model has its own)

    @classmethod
    def load(cls, params_file: str | os.PathLike = "params.yaml") -> ServeConfig:
        params = load_params(params_file)
        serve, register = section(params, "serve"), section(params, "register")
        return cls(model_name=str(register["model_name"]),
                   max_upload_bytes=int(float(serve["max_upload_mb"]) * 1024 * 1024),
                   max_pixels=int(serve["max_pixels"]),
                   max_batch_size=int(serve["max_batch_size"]),
                   max_latency_ms=int(serve["max_latency_ms"]),
                   tflite_threads=int(serve["tflite_threads"]),
                   streams={str(k): str(v) for k, v in (serve.get("streams") or {}).items()},
                   default_stream=str(serve["default_stream"]),
                   image_size=int((params.get("backbone") or {}).get("image_size", 224)))

    def stream_for(self, label: str) -> str:
        return self.streams.get(label, self.default_stream)


def check_upload(data: bytes, cfg: ServeConfig, field: str = "") -> images.DecodedImage:
    """Decode one upload or raise ``ImageRejected`` with a reason naming the field, if given."""
    prefix = f"{field}: " if field else ""
    if len(data) > cfg.max_upload_bytes:
        raise images.ImageRejected(
            f"{prefix}upload of {len(data):,} bytes is over the limit of "
            f"{cfg.max_upload_bytes:,} bytes (serve.max_upload_mb)", "too_large")
    try:
        return images.decode(data, cfg.max_pixels)
    except images.ImageRejected as exc:
        raise images.ImageRejected(prefix + exc.reason, exc.code) from None


def describe(labels: list[str], probabilities: np.ndarray, cfg: ServeConfig) -> dict[str, Any]:
    """The answer for one image, as the service and the CLI give it."""
    best = int(np.argmax(probabilities))
    return {"label": labels[best], "confidence": float(probabilities[best]),
            "stream": cfg.stream_for(labels[best]),
            "probabilities": {c: float(p) for c, p in zip(labels, probabilities)}}


def error_body(exc: images.ImageRejected) -> dict[str, str]:
    return {"error": exc.reason, "code": exc.code}


class TFLiteModel:
    """A Keras model converted to TFLite fp32; thread-safe ``predict`` on resized batches."""

    def __init__(self, tflite: bytes, num_threads: int):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import warnings

            import tensorflow as tf

            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            Interpreter = tf.lite.Interpreter
        self._interpreter = Interpreter(model_content=tflite, num_threads=num_threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = 0
        self._lock = threading.Lock()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            if batch.shape[0] != self._batch:
                self._interpreter.resize_tensor_input(self._input, batch.shape)
                self._interpreter.allocate_tensors()
                self._batch = batch.shape[0]
            self._interpreter.set_tensor(self._input, batch)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output).copy()


#: Bump when ``convert_to_tflite`` changes, so cached conversions are redone.
TFLITE_CONVERTER_VERSION = 2


def convert_to_tflite(keras_model) -> bytes:
    """Convert the model's fixed-size part (after the resize layer) to TFLite fp32."""
    import keras
    import tensorflow as tf

    size = int(keras_model.get_layer("resize").height)
    inputs = keras.Input((size, size, 3), name="resized_image")
    fixed = keras.Model(inputs, keras_model(inputs, training=False))
    return tf.lite.TFLiteConverter.from_keras_model(fixed).convert()


@dataclass
class Champion:
    """The served model: labels, the resize size, and a fast forward pass."""

    tag: str
    labels: list[str]
    image_size: int
    model: TFLiteModel
    metadata: dict[str, Any]

    def prepare(self, decoded: list[images.DecodedImage]) -> np.ndarray:
        from wastesort.features import resize_batch

        return resize_batch([d.array() for d in decoded], self.image_size)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.model.predict(batch)

    def describe(self, probabilities: np.ndarray, cfg: ServeConfig) -> dict[str, Any]:
        return describe(self.labels, probabilities, cfg)


def bento_model(cfg: ServeConfig):
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(f"{cfg.model_name}:latest")
    except NotFound:
        raise ConfigError(f"no model '{cfg.model_name}' in the BentoML store "
                          f"({os.environ.get('BENTOML_HOME', '~/bentoml')}); run `dvc repro` "
                          "(its register stage imports the champion) or "
                          "`wastesort import-champion`") from None


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)


def load_champion(cfg: ServeConfig, model=None) -> Champion:
    """Load the BentoML store's model (imported from the MLflow registry's champion)."""
    from mlflow.models import Model

    model = model or bento_model(cfg)
    mlflow_dir = Path(model.path_of("mlflow_model"))
    labels = list(Model.load(str(mlflow_dir / "MLmodel")).metadata["labels"])
    blob_path = Path(model.path_of("tflite/model.tflite"))
    info_path = blob_path.with_suffix(".json")
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    if blob_path.is_file() and info.get("converter") == TFLITE_CONVERTER_VERSION:
        blob, image_size = blob_path.read_bytes(), int(info["size"])
    else:
        import mlflow.keras

        keras_model = mlflow.keras.load_model(str(mlflow_dir))
        blob, image_size = convert_to_tflite(keras_model), int(keras_model.get_layer("resize").height)
        try:  # cache beside the model; a read-only store (a built bento) just converts again
            write_atomic(blob_path, blob)
            write_atomic(info_path, json.dumps({"size": image_size,
                                                "converter": TFLITE_CONVERTER_VERSION}).encode())
        except OSError:
            pass
    return Champion(str(model.tag), labels, image_size, TFLiteModel(blob, cfg.tflite_threads),
                    dict(model.info.metadata))


class UploadGuard:
    """ASGI middleware: answer a malformed upload with a 4xx JSON error naming the field.

    BentoML parses the body before the API runs and answers what it cannot parse (no body,
    a raw or JSON body, an unknown form field) with a 500. This checks the request first: a
    multipart form, under the size limit, whose only field is the expected one.
    """

    def __init__(self, app, fields: dict[str, str], max_body_bytes: dict[str, int]):
        self.app = app
        self.fields = fields  # route -> form field name
        self.max_body_bytes = max_body_bytes  # route -> largest request accepted

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "POST" or path not in self.fields:
            return await self.app(scope, receive, send)
        field = self.fields[path]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        content_type = headers.get("content-type", "")
        length = headers.get("content-length")
        if length == "0" or (length is None and "transfer-encoding" not in headers):
            return await self.reject(send, HTTPStatus.BAD_REQUEST, "empty",
                                     f"{field}: the request has no body")
        if not content_type.startswith("multipart/form-data"):
            return await self.reject(
                send, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "not_multipart",
                f"{field}: send the photo as a multipart/form-data upload in the field "
                f"'{field}' (curl -F {field}=@photo.jpg), not as "
                f"{content_type or 'a body with no content type'}")
        limit = self.max_body_bytes[path]
        if length is not None and length.isdigit() and int(length) > limit:
            return await self.reject(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large",
                                     f"{field}: request of {int(length):,} bytes is over the "
                                     f"limit of {limit:,} bytes (serve.max_upload_mb)")
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await self.reject(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large",
                                         f"{field}: request over the limit of {limit:,} bytes "
                                         "(serve.max_upload_mb)")
            body.append(chunk)
            more = message.get("more_body", False)
        data = b"".join(body)
        problem = await self.form_problem(scope, data, field)
        if problem:
            return await self.reject(send, HTTPStatus.BAD_REQUEST, "bad_form", problem)

        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    @staticmethod
    async def form_problem(scope, data: bytes, field: str) -> str | None:
        from starlette.requests import Request

        async def once():
            return {"type": "http.request", "body": data, "more_body": False}

        try:
            form = await Request(scope, receive=once).form()
        except Exception as exc:  # noqa: BLE001 - any multipart parse failure is the client's
            return f"{field}: the multipart form cannot be parsed: {exc}"
        try:
            names = list(form.keys())
            if field not in names:
                found = ", ".join(sorted(set(names))) or "none"
                return f"{field}: no form field '{field}' (fields sent: {found})"
            unexpected = sorted(set(names) - {field})
            if unexpected:
                return (f"{field}: unexpected form field(s) {', '.join(unexpected)}; "
                        f"send the photo(s) in '{field}' only")
            if any(isinstance(v, str) for v in form.getlist(field)):
                return f"{field}: must be a file upload (curl -F {field}=@photo.jpg), not text"
        finally:
            await form.close()
        return None

    @staticmethod
    async def reject(send, status: HTTPStatus, code: str, message: str) -> None:
        body = json.dumps({"error": message, "code": code}).encode()
        await send({"type": "http.response.start", "status": int(status),
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
