"""A small OpenAI-compatible HTTP server for tests: scripted replies, injected failures, recorded requests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAIServer:
    """An OpenAI-compatible server with scripted replies and scripted failures, recording every request."""

    def __init__(
        self,
        reply: Callable[[dict[str, Any]], str] | None = None,
        failures: list[tuple[int, dict[str, str]]] | None = None,
    ) -> None:
        self.reply = reply or (lambda body: f"reply {len(self.requests)}")
        self.failures = list(failures or [])
        self.requests: list[dict[str, Any]] = []  # {"path", "body", "time", "status"}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    failure = server.failures.pop(0) if server.failures else None
                    server.requests.append(
                        {
                            "path": self.path,
                            "body": body,
                            "time": time.monotonic(),
                            "status": failure[0] if failure else 200,
                        }
                    )
                if failure is not None:
                    status, headers = failure
                    self._send(
                        status,
                        {"error": {"message": f"scripted failure {status}", "type": "server_error"}},
                        headers,
                    )
                elif self.path.endswith("/chat/completions"):
                    self._send(200, server._chat(body))
                elif self.path.endswith("/completions"):
                    self._send(200, server._text(body))
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.handle_error = lambda request, address: None  # a client that timed out hung up: fine
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def _choices(self, body: dict) -> tuple[list[str], int]:
        texts = [self.reply(body) for _ in range(body.get("n") or 1)]
        return texts, sum(len(t.split()) for t in texts)

    def _usage(self, prompt_words: int, completion_words: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_words,
            "completion_tokens": completion_words,
            "total_tokens": prompt_words + completion_words,
        }

    def _chat(self, body: dict) -> dict:
        texts, words = self._choices(body)
        prompt_words = sum(len(m["content"].split()) for m in body["messages"])
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                for i, t in enumerate(texts)
            ],
            "usage": self._usage(prompt_words, words),
        }

    def _text(self, body: dict) -> dict:
        texts, words = self._choices(body)
        return {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": i, "text": t, "finish_reason": "length", "logprobs": None}
                for i, t in enumerate(texts)
            ],
            "usage": self._usage(len(body["prompt"].split()), words),
        }

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
