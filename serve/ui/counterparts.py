"""A node's counterparts in the other taxonomies crosswalks map it to (for the taxonomy node
page and the review item page), from the crosswalk service. A crosswalk that cannot be read
never breaks the page: it is left out, and logged."""

from __future__ import annotations

import logging

from fastapi import Request

from serve.api.crosswalks.protocol import CounterpartOut
from serve.api.errors import ApiError
from serve.ui.web import services

log = logging.getLogger("tagsmith.ui")


def counterparts_of(request: Request, node_id: str | None) -> list[CounterpartOut]:
    """``node_id``'s counterparts in every crosswalk from the tagging taxonomy (its own row, or
    its nearest mapped ancestor's; ``unmapped`` ones included, so the page can say so)."""
    if not node_id:
        return []
    try:
        return services(request).crosswalks.counterparts(node_id)
    except ApiError as exc:  # 404: not a node of the crosswalks' source taxonomy (e.g. a stale suggestion)
        if exc.status >= 500:
            log.warning("counterparts of %r: %s", node_id, exc.message)
        return []
    except Exception:
        log.exception("counterparts of %r could not be read", node_id)
        return []
