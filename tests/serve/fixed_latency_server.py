"""The service with its LLM replaced by a fault-free fixed-latency backend, as a process:
``python -m tests.serve.fixed_latency_server --port N --latency 0.05`` (settings from the env)."""

from __future__ import annotations

import argparse

import uvicorn

from agent.llm.fake import FixedLatencyBackend
from serve.app import create_app
from serve.jsonlog import configure_logging
from serve.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    settings = load_settings()
    configure_logging(settings.log_level)
    app = create_app(settings, llm=FixedLatencyBackend(args.latency))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False, log_level=settings.log_level)


if __name__ == "__main__":
    main()
