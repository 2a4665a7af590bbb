"""A small client for the parts of the Neon API v2 the migrations need: connection URIs and branches.

Every call is authenticated with the project's API key (``NEON_API_KEY``); the key and the URIs it returns (which
hold the role's password) never appear in errors. Calls are retried with backoff on 423 (another operation is
running), 429 and 5xx; branch changes wait until Neon reports their operations finished. All waits use the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from sophia.db.errors import MigrationRefused
from sophia.db.redact import redact
from sophia.engine.clock import Clock

_RETRY_STATUSES = {423, 429, 500, 502, 503, 504}
_DONE = {"finished", "skipped"}
_FAILED = {"failed", "error", "cancelled", "cancelling"}


class NeonApiError(MigrationRefused):
    """The Neon API refused or failed a request."""


@dataclass(frozen=True)
class Branch:
    id: str
    name: str
    default: bool
    parent_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Branch:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name", data["id"])),
            default=bool(data.get("default", data.get("primary", False))),
            parent_id=data.get("parent_id"),
        )


class NeonApi:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        project_id: str,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        attempts: int = 5,
        operation_timeout_s: float = 300.0,
        poll_s: float = 1.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._project = project_id
        self._clock = clock
        self._transport = transport
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._operation_timeout_s = operation_timeout_s
        self._poll_s = poll_s

    @property
    def project_id(self) -> str:
        return self._project

    # -- requests ---------------------------------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        url = f"{self._base_url}/projects/{self._project}{path}"
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        delay = 0.5
        last = ""
        for attempt in range(1, self._attempts + 1):
            try:
                async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout_s) as client:
                    response = await client.request(method, url, params=params, json=body, headers=headers)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    data = response.json() if response.content else {}
                    return data if isinstance(data, dict) else {}
                last = f"HTTP {response.status_code}: {_message(response)}"
                if response.status_code not in _RETRY_STATUSES:
                    break
            if attempt < self._attempts:
                await self._clock.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise NeonApiError(redact(f"Neon API {method} {path or '/'} failed: {last}", [self._api_key]))

    async def _wait(self, operations: list[dict[str, Any]]) -> None:
        """Poll each operation until it is finished; fail if one fails or the wait runs out."""
        deadline = self._clock.monotonic() + self._operation_timeout_s
        for operation in operations:
            op_id = str(operation.get("id"))
            status = str(operation.get("status", "running"))
            while status not in _DONE:
                if status in _FAILED:
                    raise NeonApiError(f"Neon operation {operation.get('action', '')} {op_id} {status}")
                if self._clock.monotonic() >= deadline:
                    raise NeonApiError(f"Neon operation {op_id} did not finish in {self._operation_timeout_s:g}s")
                await self._clock.sleep(self._poll_s)
                data = await self._request("GET", f"/operations/{op_id}")
                status = str(data.get("operation", {}).get("status", "running"))

    # -- connection URIs --------------------------------------------------------------------------------------------

    async def connection_uri(self, *, database: str, role: str, branch_id: str | None = None) -> str:
        """The direct (never pooled) URI of a branch's read-write endpoint; contains the role's password."""
        params = {"database_name": database, "role_name": role, "pooled": "false"}
        if branch_id:
            params["branch_id"] = branch_id
        data = await self._request("GET", "/connection_uri", params=params)
        uri = data.get("uri")
        if not isinstance(uri, str) or not uri:
            raise NeonApiError("Neon API returned no connection URI")
        return uri

    # -- branches ---------------------------------------------------------------------------------------------------

    async def branches(self) -> list[Branch]:
        data = await self._request("GET", "/branches")
        return [Branch.from_json(b) for b in data.get("branches", [])]

    async def default_branch(self) -> Branch:
        for branch in await self.branches():
            if branch.default:
                return branch
        raise NeonApiError(f"Neon project {self._project} has no default branch")

    async def find_branch(self, name_or_id: str) -> Branch:
        for branch in await self.branches():
            if name_or_id in (branch.name, branch.id):
                return branch
        raise NeonApiError(f"no branch named {name_or_id!r} in Neon project {self._project}")

    async def create_branch(self, name: str, *, parent_id: str | None = None) -> Branch:
        """A copy-on-write branch (of the default branch unless ``parent_id``) with its own read-write endpoint."""
        spec: dict[str, Any] = {"name": name}
        if parent_id:
            spec["parent_id"] = parent_id
        data = await self._request("POST", "/branches", body={"branch": spec, "endpoints": [{"type": "read_write"}]})
        await self._wait(list(data.get("operations", [])))
        return Branch.from_json(data["branch"])

    async def delete_branch(self, branch_id: str) -> None:
        data = await self._request("DELETE", f"/branches/{branch_id}")
        await self._wait(list(data.get("operations", [])))

    async def restore_branch(self, branch_id: str, *, source_branch_id: str, preserve_under_name: str) -> None:
        """Make ``branch_id`` a copy of the head of ``source_branch_id``; its current state is kept as a new branch."""
        data = await self._request(
            "POST",
            f"/branches/{branch_id}/restore",
            body={"source_branch_id": source_branch_id, "preserve_under_name": preserve_under_name},
        )
        await self._wait(list(data.get("operations", [])))


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])[:200]
    return response.text[:200]
