"""crm-mcp's live CRM backend: HubSpot tasks through the official ``hubspot-api-client`` (CRM v3).

A task gets ``hs_task_subject``, ``hs_task_body``, ``hs_task_priority`` (HIGH/MEDIUM/LOW), ``hs_timestamp`` (its
due time), ``hs_task_status=NOT_STARTED``, ``hs_task_type=TODO`` and ``hubspot_owner_id``. The assignee is a
HubSpot owner id (digits) or an owner's email, looked up once with the owners API and remembered.

The client is synchronous (urllib3), so each call runs in a worker thread. A 429 is retried after its
``Retry-After`` when that is at most ``MAX_RETRY_WAIT_S`` (urllib3's own ``Retry``, allowed for POST because a
429 means nothing was created); nothing else is retried, so a task is never created twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from hubspot import HubSpot
from hubspot.crm.objects.tasks import ApiException as TasksApiException
from hubspot.crm.objects.tasks import SimplePublicObjectInputForCreate
from hubspot.crm.owners import ApiException as OwnersApiException
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.retry import Retry

from sophia.services.backends import CreatedTask, CrmTask, UpstreamError

MAX_RETRY_WAIT_S = 10
TIMEOUT_S = (3.0, 10.0)  # connect, read


class RetryAfterTooLong(Urllib3Error):
    """HubSpot asked us to wait longer than we hold a request open."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"Retry-After {seconds:g} s")
        self.seconds = seconds


class RateLimitRetry(Retry):
    """urllib3's Retry for 429 only, honouring Retry-After unless it asks for more than ``MAX_RETRY_WAIT_S``."""

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        return status_code == 429 and super().is_retry(method, status_code, has_retry_after)

    def sleep(self, response: Any = None) -> None:
        wait = self.get_retry_after(response) if response is not None else None
        if wait is not None and wait > MAX_RETRY_WAIT_S:
            raise RetryAfterTooLong(wait)
        super().sleep(response)


def _retry() -> Retry:
    return RateLimitRetry(
        total=1, connect=0, read=0, redirect=0, status=1, status_forcelist=[429], allowed_methods=None,
        respect_retry_after_header=True, raise_on_status=False, backoff_factor=0,
    )  # fmt: skip


def hubspot_error(exc: TasksApiException | OwnersApiException) -> UpstreamError:
    """A clear answer for a HubSpot refusal; HubSpot's own message for validation errors (no credentials in it)."""
    status = int(exc.status or 0)
    message = ""
    try:
        message = str(json.loads(exc.body or "{}").get("message", ""))[:300]
    except (ValueError, AttributeError):
        message = ""
    headers = exc.headers or {}
    if status == 429:
        retry_after = headers.get("Retry-After")
        seconds = int(retry_after) if retry_after and str(retry_after).isdigit() else 1
        return UpstreamError("HubSpot is rate limiting us; retry later", status=429, retry_after=seconds)
    if status in {401, 403}:
        return UpstreamError(f"HubSpot refused the access token (HTTP {status})", status=502)
    if status in {400, 409, 422}:
        return UpstreamError(f"HubSpot refused the task: {message or f'HTTP {status}'}", status=422)
    if status >= 500:
        return UpstreamError(f"HubSpot answered HTTP {status}; retry later", status=503)
    return UpstreamError(f"HubSpot answered HTTP {status}", status=502)


class HubSpotCrm:
    """Tasks in HubSpot; ``host`` is HubSpot's API (or, in tests, a fake HubSpot on 127.0.0.1)."""

    name = "hubspot"
    needs_database = False

    def __init__(self, access_token: str, host: str) -> None:
        self._client = HubSpot(access_token=access_token, host=host, retry=_retry())
        self._owners: dict[str, str] = {}

    async def create_task(self, task: CrmTask) -> CreatedTask:
        try:
            return await asyncio.to_thread(self._create, task)
        except (TasksApiException, OwnersApiException) as exc:
            raise hubspot_error(exc) from None
        except RetryAfterTooLong as exc:
            retry_after = round(exc.seconds)
            raise UpstreamError(
                "HubSpot is rate limiting us; retry later", status=429, retry_after=retry_after
            ) from None
        except Urllib3Error as exc:
            raise UpstreamError(f"HubSpot did not answer ({type(exc).__name__})", status=504) from None

    def _create(self, task: CrmTask) -> CreatedTask:
        properties = {
            "hs_task_subject": task.subject,
            "hs_task_body": task.description,
            "hs_task_priority": task.priority,
            "hs_task_status": "NOT_STARTED",
            "hs_task_type": "TODO",
            "hs_timestamp": task.due_at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "hubspot_owner_id": self._owner_id(task.assignee),
        }
        body = SimplePublicObjectInputForCreate(properties=properties, associations=[])
        created = self._client.crm.objects.tasks.basic_api.create(body, _request_timeout=TIMEOUT_S)
        return CreatedTask(task_id=str(created.id))

    def _owner_id(self, assignee: str) -> str:
        if assignee.isdigit():
            return assignee
        if assignee not in self._owners:
            page = self._client.crm.owners.owners_api.get_page(email=assignee, limit=1, _request_timeout=TIMEOUT_S)
            if not page.results:
                raise UpstreamError(f"HubSpot has no owner with the email {assignee!r}", status=422)
            self._owners[assignee] = str(page.results[0].id)
        return self._owners[assignee]

    async def aclose(self) -> None:
        return None
