"""ASGI middleware in front of the service's upload routes: malformed requests get a 4xx."""

from __future__ import annotations

import json
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
    def rename_field(scope, data: bytes, old: str, new: str) -> tuple[bytes, dict]:
        """The one part's ``name="old"`` as ``name="new"``, with the content length to match."""
        head_end = data.find(b"\r\n\r\n")
        head = data[:head_end].replace(f'name="{old}"'.encode(), f'name="{new}"'.encode(), 1)
        data = head + data[head_end:]
        headers = [
            (k, str(len(data)).encode()) if k.lower() == b"content-length" else (k, v)
            for k, v in scope["headers"]
        ]
        headers.append((SENT_FIELD_HEADER.encode(), old.encode()))  # for the API's messages
        return data, {**scope, "headers": headers}

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
