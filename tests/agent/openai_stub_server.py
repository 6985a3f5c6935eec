"""A tiny OpenAI-compatible server for process tests (standard library only): answers
``POST /v1/chat/completions`` deterministically with the first id the request's
``json_schema`` allows, and ``GET /v1/models``. Run it as
``python -m tests.agent.openai_stub_server --port N [--latency 0.02]``; it prints ``ready``."""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def first_allowed(body: dict[str, Any]) -> str:
    schema = body["response_format"]["json_schema"]["schema"]
    return str(schema["properties"]["tags"]["items"]["enum"][0])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server: a kill cuts open connections
    latency_s = 0.0
    name = "stub"

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        if not self.path.endswith("/chat/completions"):
            self._send(404, {"error": {"message": "not found"}})
            return
        time.sleep(self.latency_s)
        content = json.dumps({"tags": [first_allowed(body)]})
        self._send(200, {
            "id": "stub", "object": "chat.completion", "created": 0, "model": self.name,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    Handler.latency_s = args.latency
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
