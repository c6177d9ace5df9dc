"""The Mistral API on 127.0.0.1: Bearer key, chat and embeddings, Mistral's own error bodies.

POST /v1/chat/completions and /v1/embeddings with `Authorization: Bearer KEY`. A bad key gets the gateway's
401 {"message": "Unauthorized", "request_id"}; an unknown model the API's 400
{"object": "error", "message": "Invalid model: …", "type": "invalid_model", "param": null, "code": "1500"}.
`outage`: "rate_limit" (429 {"message": "Requests rate limit exceeded"}) or "server_error" (500).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from tests.checks.http_server import HttpServer, Reply, Request

KEY = "mistral-test-0123456789abcdef"
MODELS = {"mistral-test": "chat", "pixtral-test": "vision", "embed-test": "embedding"}
DIMENSIONS = 1024

Outage = Literal["rate_limit", "server_error"] | None


class MistralServer(HttpServer):
    def __init__(self) -> None:
        super().__init__(self._answer)
        self.outage: Outage = None

    def _answer(self, request: Request) -> Reply:  # noqa: PLR0911 - the fake API's routing, one return a route
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return _json(401, {"message": "Unauthorized", "request_id": "0f3c9e0d1b2a"})
        if request.method != "POST" or request.path not in ("/v1/chat/completions", "/v1/embeddings"):
            return _json(404, {"detail": "Not Found"})
        body = json.loads(request.body)
        purpose = MODELS.get(body.get("model", ""))
        wanted = "embedding" if request.path == "/v1/embeddings" else "chat"
        if purpose is None or (purpose == "embedding") != (wanted == "embedding"):
            return _invalid(f"Invalid model: {body.get('model', '')}", "invalid_model", "1500")
        if self.outage == "rate_limit":
            return _json(429, {"message": "Requests rate limit exceeded"}, {"Retry-After": "3"})
        if self.outage == "server_error":
            return _invalid("Internal server error", "internal_server_error", "3000", status=500)
        if wanted == "embedding":
            if body != {"model": body["model"], "input": [body["input"][0]]}:
                return _invalid("input must be a list of strings", "invalid_request_error", "2000", status=422)
            tokens = len(body["input"][0].split())
            data = [{"object": "embedding", "index": 0, "embedding": [0.02] * DIMENSIONS}]
            return _json(
                200,
                {
                    "id": "e1",
                    "object": "list",
                    "model": body["model"],
                    "data": data,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                },
            )
        if body.get("max_tokens") != 1 or set(body) != {"model", "messages", "max_tokens"}:
            return _invalid("this test server answers only 1-token requests", "invalid_request_error", "2000")
        tokens = _tokens(body["messages"][0]["content"], purpose == "vision")
        if tokens is None:
            return _invalid("Image input is not supported by this model", "invalid_request_message", "3051")
        choice = {"index": 0, "message": {"role": "assistant", "content": "ready"}, "finish_reason": "length"}
        usage = {"prompt_tokens": tokens, "completion_tokens": 1, "total_tokens": tokens + 1}
        return _json(
            200, {"id": "c1", "object": "chat.completion", "model": body["model"], "choices": [choice], "usage": usage}
        )


def _tokens(content: Any, reads_images: bool) -> int | None:
    if isinstance(content, str):
        return len(content.split())
    tokens = 0
    for chunk in content:
        if chunk["type"] == "text":
            tokens += len(chunk["text"].split())
        elif chunk["type"] == "image_url" and reads_images:
            header, _, data = str(chunk["image_url"]).partition(",")
            if header != "data:image/png;base64" or not base64.b64decode(data).startswith(b"\x89PNG"):
                return None
            tokens += 4
        else:
            return None
    return tokens


def _json(status: int, document: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(document).encode(), {"Content-Type": "application/json", **(headers or {})})


def _invalid(message: str, kind: str, code: str, status: int = 400) -> Reply:
    return _json(status, {"object": "error", "message": message, "type": kind, "param": None, "code": code})
