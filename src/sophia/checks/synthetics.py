"""The deployment guide's three end-to-end checks, sent through each service's router to the new version.

Each check asserts the side effect, not just an HTTP 200: the Slack message and the CRM task must exist in the
sandbox outbox written by the new version, and the Neon query must return its row. Requests go to each service's
entry (its router, or the mesh gateway) and, while a canary exists, carry the platform's pin for the canary track
(``ServiceStatus.pins``: a header the router or an Istio header-match route sends to the canary only).
An empty ``version`` (services checked at bare URLs, version unknown) checks the side effects, not who served them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import psycopg

from sophia.engine.model import ServiceStatus, SyntheticResult, Track

SYNTHETIC_HEADERS = {"x-sophia-source": "synthetics", "user-agent": "sophia-synthetics"}


class CheckFailed(Exception):
    pass


Check = Callable[[httpx.AsyncClient, ServiceStatus, str], Awaitable[str]]


class SyntheticSuite:
    def __init__(self, database_url: str | None, *, api_token: str | None = None) -> None:
        self._database_url = database_url
        self._headers = dict(SYNTHETIC_HEADERS) | ({"authorization": f"Bearer {api_token}"} if api_token else {})

    async def run(self, services: Sequence[ServiceStatus], version: str, timeout_s: float) -> list[SyntheticResult]:
        by_name = {s.name: s for s in services}
        plan: list[tuple[str, str, Check]] = [
            ("slack-post", "comms-mcp", self._slack_post),
            ("crm-task", "crm-mcp", self._crm_task),
            ("neon-query", "analytics-mcp", self._neon_query),
        ]
        async with httpx.AsyncClient(headers=self._headers) as client:
            return list(
                await asyncio.gather(
                    *(
                        self._timed(
                            client,
                            version,
                            timeout_s,
                            name=name,
                            service=service,
                            check=check,
                            status=by_name.get(service),
                        )
                        for name, service, check in plan
                    )
                )
            )

    async def _timed(
        self,
        client: httpx.AsyncClient,
        version: str,
        timeout_s: float,
        *,
        name: str,
        service: str,
        status: ServiceStatus | None,
        check: Check,
    ) -> SyntheticResult:
        started = time.perf_counter()
        if status is None:
            return SyntheticResult(name, service, False, "service is not deployed", 0.0)
        try:
            async with asyncio.timeout(timeout_s):
                detail = await check(client, status, version)
            ok = True
        except TimeoutError:
            ok, detail = False, f"no result within {timeout_s:g}s"
        except CheckFailed as exc:
            ok, detail = False, str(exc)
        except httpx.HTTPError as exc:
            ok, detail = False, f"request failed ({type(exc).__name__})"
        except psycopg.Error as exc:
            ok, detail = False, f"side-effect query failed ({type(exc).__name__})"
        return SyntheticResult(name, service, ok, detail, round((time.perf_counter() - started) * 1000, 1), version)

    @staticmethod
    async def _post(
        client: httpx.AsyncClient, status: ServiceStatus, path: str, body: dict[str, Any], version: str
    ) -> dict[str, Any]:
        target = status.pinned(Track.CANARY) if status.canary is not None else status.entry
        response = await client.post(target.at(path), json=body, headers=dict(target.headers))
        if response.status_code != 200:
            raise CheckFailed(f"POST {path} answered HTTP {response.status_code}: {response.text[:200]}")
        served = response.headers.get("x-sophia-version")
        if version and served != version:
            raise CheckFailed(f"POST {path} was served by {served}, not {version}")
        payload: dict[str, Any] = response.json()
        if payload.get("ok") is not True:
            raise CheckFailed(f"POST {path} did not confirm success: {str(payload)[:200]}")
        return payload

    async def _slack_post(self, client: httpx.AsyncClient, status: ServiceStatus, version: str) -> str:
        token = f"sophia synthetic check {uuid.uuid4()}"
        body = {"channel": "#sophia-synthetics", "message": token, "username": "sophia-synthetics"}
        payload = await self._post(client, status, "/slack/post", body, version)
        where = await self._outbox_row("slack_message", "message", token, version)
        return f"message {payload.get('message_id')} posted{where}"

    async def _crm_task(self, client: httpx.AsyncClient, status: ServiceStatus, version: str) -> str:
        token = f"Synthetic check {uuid.uuid4()}"
        body = {
            "subject": token,
            "description": "Created by the synthetics stage",
            "priority": "LOW",
            "assignee": "release-bot@sophia.ai",
        }
        payload = await self._post(client, status, "/tasks/create", body, version)
        task_id = payload.get("task_id")
        if not task_id:
            raise CheckFailed("no task id returned")
        where = await self._outbox_row("crm_task", "subject", token, version)
        return f"task {task_id} created{where}"

    async def _neon_query(self, client: httpx.AsyncClient, status: ServiceStatus, version: str) -> str:
        payload = await self._post(client, status, "/query/neon", {"query": "SELECT 1 AS ok"}, version)
        if payload.get("rows") != [[1]]:
            raise CheckFailed(f"SELECT 1 returned {payload.get('rows')!r}")
        return "SELECT 1 returned 1 row"

    async def _outbox_row(self, kind: str, field: str, token: str, version: str) -> str:
        """Prove the side effect: the sandbox outbox holds the row, written by the new version."""
        if self._database_url is None:
            return ""
        async with await psycopg.AsyncConnection.connect(self._database_url, connect_timeout=5) as conn:
            cursor = await conn.execute(
                "SELECT id, version FROM sandbox.outbox WHERE kind = %s AND payload ->> %s = %s",
                (kind, field, token),
            )
            row = await cursor.fetchone()
        if row is None:
            raise CheckFailed(f"answered 200 but no {kind} row reached the outbox")
        if version and row[1] != version:
            raise CheckFailed(f"outbox row {row[0]} was written by {row[1]}, not {version}")
        return f"; outbox row {row[0]} written by {row[1]}"
