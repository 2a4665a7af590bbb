"""The tool-call surface every service offers: ``POST /api/invoke`` and ``GET /api/info``.

The nine generic services have only this surface (plus the probes). ``invoke`` does a small amount of real,
deterministic work on its arguments (a canonical-JSON SHA-256 digest and a size), enough to exercise the
request path, serialisation and CPU under load.
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import Field

from sophia.services.limits import RequestBody
from sophia.services.settings import ServiceSettings

TOOL_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$"


class InvokeRequest(RequestBody):
    tool: Annotated[str, Field(pattern=TOOL_PATTERN, description="Tool name, e.g. 'summarise'.")]
    arguments: Annotated[dict[str, Any], Field(default_factory=dict, max_length=100)]


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


def service_info(settings: ServiceSettings, backend: str, endpoints: list[str]) -> dict[str, Any]:
    """What this service is and which endpoints it serves (``/api/info`` and the MCP tool ``service_info``)."""
    return {
        "service": settings.service,
        "kind": settings.kind,
        "version": settings.version,
        "track": settings.track,
        "backend": backend,
        "endpoints": endpoints,
    }


def add_tool_routes(app: FastAPI, settings: ServiceSettings, info: dict[str, Any]) -> None:
    tags: list[str | Enum] = ["tools"]

    @app.post("/api/invoke", tags=tags)
    async def invoke(request: InvokeRequest) -> dict[str, Any]:
        """Call a tool of this service."""
        result = invoke_tool(settings.service, request.tool, request.arguments)
        return {"ok": True, "service": settings.service, "tool": request.tool, "result": result}

    @app.get("/api/info", tags=tags)
    async def api_info() -> dict[str, Any]:
        """What this service is and which endpoints it serves."""
        return info
