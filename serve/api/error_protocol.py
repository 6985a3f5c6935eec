"""The one error shape of the API (:class:`ErrorResponse`), as pydantic models free of FastAPI:
the service answers with them (:mod:`serve.api.errors`) and the Python client reads them
(:mod:`serve.client`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(default_factory=list, description="where: e.g. [\"body\", \"products\", 3, \"title\"]")
    message: str
    type: str | None = Field(default=None, description="machine-readable kind of the problem")


class ErrorInfo(BaseModel):
    status: int = Field(description="the HTTP status, repeated")
    code: str = Field(description="stable machine-readable reason, e.g. validation_error, rate_limited")
    message: str = Field(description="what went wrong and what to do, for humans")
    request_id: str | None = Field(default=None, description="the X-Request-ID of the request")
    details: list[ErrorDetail] = Field(default_factory=list)
    current: dict[str, Any] | None = Field(
        default=None, description="only with some 409s (a review item's `changed`): the resource as it is "
        "now, so the client can show it without another request; absent otherwise",
    )


class ErrorResponse(BaseModel):
    error: ErrorInfo
