"""The tool-call surface every service offers: ``POST /api/invoke`` and ``GET /api/info``.

The nine generic services have only this surface (plus the probes). ``invoke`` does a small amount of real,
deterministic work on its arguments (a canonical-JSON SHA-256 digest and a size), enough to exercise the
request path, serialisation and CPU under load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from sophia.services.settings import ServiceSettings

TOOL_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$"


class InvokeRequest(BaseModel):
    tool: Annotated[str, Field(pattern=TOOL_PATTERN, description="Tool name, e.g. 'summarise'.")]
    arguments: dict[str, Any] = Field(default_factory=dict)


def canonical_json(value: Any) -> bytes:
    """``value`` as compact JSON with sorted keys: equal data gives equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def invoke_tool(service: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The work behind ``/api/invoke``: a digest of the call that depends on the service, tool and arguments."""
    body = canonical_json({"service": service, "tool": tool, "arguments": arguments})
    return {
        "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
        "argument_keys": sorted(arguments),
        "canonical_bytes": len(body),
    }


def add_tool_routes(
    app: FastAPI, settings: ServiceSettings, auth: Callable[..., Awaitable[None]], endpoints: list[str]
) -> None:
    tags: list[str | Enum] = ["tools"]
    guard = [Depends(auth)]

    @app.post("/api/invoke", tags=tags, dependencies=guard)
    async def invoke(request: InvokeRequest) -> dict[str, Any]:
        """Call a tool of this service."""
        result = invoke_tool(settings.service, request.tool, request.arguments)
        return {"ok": True, "service": settings.service, "tool": request.tool, "result": result}

    @app.get("/api/info", tags=tags, dependencies=guard)
    async def info() -> dict[str, Any]:
        """What this service is and which endpoints it serves."""
        return {
            "service": settings.service,
            "kind": settings.kind,
            "version": settings.version,
            "track": settings.track,
            "backend": settings.backend,
            "endpoints": endpoints,
        }
