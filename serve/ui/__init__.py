"""The web UI at ``/ui/``: server-rendered pages (Jinja2, autoescaped) for reviewers and
taxonomy editors, behind the same API keys as the HTTP API (a login form, then a session)."""
