"""Driving the UI over HTTP (TestClient or httpx): log in through its form, read tokens."""

from __future__ import annotations

import html
import re
from typing import Any

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    match = CSRF.search(page)
    assert match, "no CSRF token on the page"
    return html.unescape(match.group(1))


def login(client: Any, key: str, origin: str = "http://testserver") -> Any:
    """Log in through the form; returns the login POST's response (303 on success)."""
    form = client.get("/ui/login")
    assert form.status_code == 200, form.text
    return client.post(
        "/ui/login", data={"key": key, "csrf": csrf_of(form.text), "next": "/ui/"},
        headers={"Origin": origin}, follow_redirects=False,
    )
