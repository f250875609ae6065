"""ASGI middleware in front of the service's upload routes: malformed requests get a 4xx."""

from __future__ import annotations

import json
import re
from http import HTTPStatus

#: Set on a request whose field was renamed: the name the client used.
SENT_FIELD_HEADER = "x-wastesort-upload-field"


class UploadGuard:
    """ASGI middleware: answer a malformed upload with a 4xx JSON error naming the field.

    BentoML parses the body before the API runs and answers what it cannot parse (no body,
    a raw or JSON body, an unknown form field) with a 500. This checks the request first: a
    multipart form, under the size limit, whose only field is one of the route's names. The
    first name is the API's parameter; a later one (for `/predict`, `image` besides `file`) is
    renamed to it in the part's header before the request goes on.
    """

    def __init__(
        self,
        app,
        fields: dict[str, tuple[str, ...]],
        max_body_bytes: dict[str, int],
        on_reject=None,
        max_files: dict[str, tuple[int, str]] | None = None,
        no_input: tuple[str, ...] = (),
    ):
        self.app = app
        self.fields = fields  # route -> accepted form field names, the first one named in errors
        self.max_body_bytes = max_body_bytes  # route -> largest request accepted
        self.on_reject = on_reject  # called with the error code of each rejected request
        self.max_files = max_files or {}  # route -> most files in one request (and setting)
        self.no_input = no_input  # routes whose API takes nothing: a body is not parsed

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] == "http" and scope.get("method") == "GET" and path == "/docs.json":
            return await self.app(scope, receive, self.spec_sender(send))
        if scope["type"] == "http" and scope.get("method") == "POST" and path in self.no_input:
            return await self.app(*self.without_body(scope, receive), send)
        if scope["type"] != "http" or scope.get("method") != "POST" or path not in self.fields:
            return await self.app(scope, receive, send)
        names = self.fields[path]
        field = names[0]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        content_type = headers.get("content-type", "")
        length = headers.get("content-length")
        if length == "0" or (length is None and "transfer-encoding" not in headers):
            return await self.reject(
                send, HTTPStatus.BAD_REQUEST, "empty", f"{field}: the request has no body"
            )
        if not content_type.startswith("multipart/form-data"):
            return await self.reject(
                send,
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "not_multipart",
                f"{field}: send the photo as a multipart/form-data upload in the field "
                f"'{field}' (curl -F {field}=@photo.jpg), not as "
                f"{content_type or 'a body with no content type'}",
            )
        limit = self.max_body_bytes[path]
        if length is not None and length.isdigit() and int(length) > limit:
            return await self.reject(
                send,
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "too_large",
                f"{field}: request of {int(length):,} bytes is over the "
                f"limit of {limit:,} bytes (serve.max_upload_mb)",
            )
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await self.reject(
                    send,
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    "too_large",
                    f"{field}: request over the limit of {limit:,} bytes (serve.max_upload_mb)",
                )
            body.append(chunk)
            more = message.get("more_body", False)
        data = b"".join(body)
        named = self.files_named(data, content_type, names)
        if named != data:
            data, scope = named, self.with_length(scope, len(named))
        problem, sent, files = await self.form_problem(scope, data, names)
        if problem:
            return await self.reject(send, HTTPStatus.BAD_REQUEST, "bad_form", problem)
        most, setting = self.max_files.get(path, (0, ""))
        if most and files > most:
            return await self.reject(
                send,
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "too_many",
                f"{field}: {files} files in one request, over the limit of {most} ({setting})",
            )
        if sent != field:
            data, scope = self.rename_field(scope, data, sent, field)

        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    def spec_sender(self, send):
        """``send`` for `/docs.json`: BentoML's spec, made to say what the guard does."""
        start: dict = {}
        chunks: list[bytes] = []

        async def patched(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return None
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return None
            body = b"".join(chunks)
            if start.get("status") == 200:
                body = json.dumps(self.truthful(json.loads(body))).encode()
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return None

        return patched

    def truthful(self, spec: dict) -> dict:
        """The upload routes' bodies required, one file field each (an array of 1 to
        ``max_files`` for a batch route), nothing else; a route without input takes any body;
        the 4xx answers the guard and the API send, declared with their JSON."""
        error = {
            "type": "object",
            "required": ["error", "code"],
            "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
        }
        spec.setdefault("components", {}).setdefault("schemas", {})["UploadError"] = error
        bentoml_400 = spec["components"]["schemas"].get("InvalidArgument")
        if bentoml_400:  # BentoML sends its validation errors' detail as a list
            bentoml_400["properties"]["detail"] = {}
        ref = {"$ref": "#/components/schemas/UploadError"}
        described = {
            "400": "Bad Request: no body, or a form that is not one photo field",
            "413": "Too large: bytes, pixels or files over serve.max_upload_mb, "
            "serve.max_pixels or serve.max_images_per_request",
            "415": "Not a multipart form, not an image or an unsupported format",
            "422": "Corrupt or truncated image, or a side under validate.min_side",
        }
        for path, ops in spec.get("paths", {}).items():
            op = ops.get("post")
            if op is None:
                continue
            if path in self.no_input:
                op["requestBody"] = {"required": False, "content": {"*/*": {"schema": {}}}}
                continue
            if path not in self.fields:
                continue
            form = op["requestBody"]["content"]["multipart/form-data"]
            field_schema = form["schema"]["properties"][self.fields[path][0]]
            (field_schema.get("items") or field_schema)["minLength"] = 1  # an empty file is a 400
            if field_schema.get("type") == "array":
                most = self.max_files.get(path, (0, ""))[0]
                field_schema["minItems"] = 1
                if most:
                    field_schema["maxItems"] = most
            form["encoding"] = {name: {"contentType": "image/*"} for name in self.fields[path]}
            form["schema"] = {
                "oneOf": [
                    {
                        "type": "object",
                        "required": [name],
                        "properties": {name: field_schema},
                        "additionalProperties": False,
                    }
                    for name in self.fields[path]
                ]
            }
            op["requestBody"]["required"] = True
            for status, text in described.items():
                op["responses"][status] = {
                    "description": text,
                    "content": {"application/json": {"schema": ref}},
                }
        return spec

    @staticmethod
    def without_body(scope, receive):
        """The request as an empty JSON one: BentoML would parse a body the API never reads
        (and answer a multipart one with no boundary with a 500)."""
        headers = [
            (k, v)
            for k, v in scope["headers"]
            if k.lower() not in (b"content-type", b"content-length")
        ]
        headers += [(b"content-type", b"application/json"), (b"content-length", b"2")]
        sent = False

        async def empty():
            nonlocal sent
            if not sent:
                sent = True
                more = True
                while more:  # the client's body, read and dropped
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return message
                    more = message.get("more_body", False)
                return {"type": "http.request", "body": b"{}", "more_body": False}
            return await receive()

        return {**scope, "headers": headers}, empty

    @staticmethod
    def with_length(scope, length: int) -> dict:
        """``scope`` with its content-length header (if it has one) set to ``length``."""
        headers = [
            (k, str(length).encode()) if k.lower() == b"content-length" else (k, v)
            for k, v in scope["headers"]
        ]
        return {**scope, "headers": headers}

    @staticmethod
    def files_named(data: bytes, content_type: str, names: tuple[str, ...]) -> bytes:
        """Each part of a photo field that has a content type other than text but no file name
        (RFC 7578 makes the name optional) given one, so it is read as the file it is."""
        found = re.search(r'boundary="?([^";]+)"?', content_type)
        if not found:
            return data
        delimiter = b"--" + found.group(1).encode("latin-1")
        pieces = data.split(delimiter)
        for i, piece in enumerate(pieces[1:], 1):
            end = piece.find(b"\r\n\r\n")
            head = piece[:end]
            if end < 0 or b"filename=" in head.lower():
                continue
            kind = re.search(rb"\r\ncontent-type:[ \t]*([^\r\n]*)", head, re.I)
            disposition = re.search(rb'content-disposition:[^\r\n]*name="([^"]*)"', head, re.I)
            if not kind or kind.group(1).lower().startswith(b"text/") or not disposition:
                continue
            if disposition.group(1).decode("latin-1") in names:
                at = disposition.end()
                pieces[i] = head[:at] + b'; filename="upload"' + head[at:] + piece[end:]
        return delimiter.join(pieces)

    @staticmethod
    def rename_field(scope, data: bytes, old: str, new: str) -> tuple[bytes, dict]:
        """The one part's ``name="old"`` as ``name="new"``, with the content length to match."""
        head_end = data.find(b"\r\n\r\n")
        head = data[:head_end].replace(f'name="{old}"'.encode(), f'name="{new}"'.encode(), 1)
        data = head + data[head_end:]
        scope = UploadGuard.with_length(scope, len(data))
        headers = [*scope["headers"], (SENT_FIELD_HEADER.encode(), old.encode())]
        return data, {**scope, "headers": headers}  # the header is for the API's messages

    @staticmethod
    async def form_problem(
        scope, data: bytes, accepted: tuple[str, ...]
    ) -> tuple[str | None, str, int]:
        """What is wrong with the form (None: nothing), the accepted field it used and the
        number of files in it."""
        from starlette.requests import Request

        async def once():
            return {"type": "http.request", "body": data, "more_body": False}

        field = accepted[0]
        try:
            form = await Request(scope, receive=once).form()
        except Exception as exc:  # noqa: BLE001 - any multipart parse failure is the client's
            return f"{field}: the multipart form cannot be parsed: {exc}", field, 0
        try:
            names = list(form.keys())
            present = [n for n in accepted if n in names]
            if not present:
                found = ", ".join(sorted(set(names))) or "none"
                wanted = " or ".join(f"'{n}'" for n in accepted)
                return f"{field}: no form field {wanted} (fields sent: {found})", field, 0
            field = present[0]
            if len(present) > 1:
                return (
                    f"{field}: send one photo, in one of the fields {', '.join(accepted)}",
                    field,
                    0,
                )
            unexpected = sorted(set(names) - {field})
            if unexpected:
                return (
                    (
                        f"{field}: unexpected form field(s) {', '.join(unexpected)}; "
                        f"send the photo(s) in '{field}' only"
                    ),
                    field,
                    0,
                )
            if any(isinstance(v, str) for v in form.getlist(field)):
                return (
                    (f"{field}: must be a file upload (curl -F {field}=@photo.jpg), not text"),
                    field,
                    0,
                )
            files = len(form.getlist(field))
        finally:
            await form.close()
        return None, field, files

    async def reject(self, send, status: HTTPStatus, code: str, message: str) -> None:
        if self.on_reject is not None:
            self.on_reject(code)
        body = json.dumps({"error": message, "code": code}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": int(status),
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
