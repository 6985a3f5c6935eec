"""``tagsmith serve``: run the HTTP service (settings from the environment / config file)."""

from __future__ import annotations

from typing import Annotated

import typer

from serve.cli._common import console, fail, store_settings


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)", min=1, max=65535)] = None,
) -> None:
    import uvicorn

    from serve.app import create_app
    from serve.body_timeout import BodyTimeoutMiddleware
    from serve.filemodes import private_dir
    from serve.http_protocol import protocol_class
    from serve.jsonlog import configure_logging
    from serve.keys import KeyStore
    from serve.state import auth_problem

    s = store_settings()  # schemas upgraded (database.auto_upgrade) or a clear refusal
    if host is not None:
        s.server.host = host
    if port is not None:
        s.server.port = port
    private_dir(s.data_dir)
    keys = KeyStore(s.store_location("keys"))
    problem = auth_problem(s, keys)
    keys.close()
    if problem is not None:  # checked here too, to fail with one clear line instead of a trace
        fail(f"refusing to start: {problem}", 2)
    console.print(
        f"tagsmith serving on http://{s.server.host}:{s.server.port} "
        f"(pipeline {s.tagging.pipeline}; docs at /docs; ready when /readyz says so)",
        soft_wrap=True, highlight=False,
    )
    configure_logging(s.log_level)
    server = s.server
    app = BodyTimeoutMiddleware(create_app(s), idle_s=server.body_timeout_s, min_rate=server.body_min_rate_bytes_s)
    uvicorn.run(
        app, host=server.host, port=server.port, log_level=s.log_level, log_config=None, access_log=False,
        http=protocol_class(
            header_timeout_s=server.header_timeout_s, body_timeout_s=server.body_timeout_s,
            body_min_rate=server.body_min_rate_bytes_s, max_connections=server.max_connections,
        ),
        # X-Forwarded-For is believed from the configured proxies only: it decides the
        # address the failed-authentication limit counts against
        proxy_headers=bool(server.trusted_proxies.strip()),
        forwarded_allow_ips=server.trusted_proxies.strip() or None,
    )
