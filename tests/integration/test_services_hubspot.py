"""crm-mcp against a fake HubSpot on 127.0.0.1 (the client's ``host``): the exact requests HubSpot receives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from sophia.services.app import create_app
from tests.fakes.saas import HUBSPOT_TOKEN, Answer, FakeApi, fake_hubspot
from tests.fakes.service_app import make_settings, serve

TASK = {"subject": "Follow up on v1.1.0", "description": "Check the canary", "priority": "high",
        "assignee": "ana@sophia.ai", "due_at": "2026-03-01T09:30:00+01:00"}  # fmt: skip


@pytest.fixture
def hubspot() -> Iterator[FakeApi]:
    with fake_hubspot() as fake:
        yield fake


def crm(hubspot: FakeApi, token: str = HUBSPOT_TOKEN) -> FastAPI:
    return create_app(
        make_settings("crm-mcp", "crm", None, hubspot_access_token=token, hubspot_api_url=hubspot.base_url)
    )


async def test_a_task_is_created_with_subject_body_priority_owner_and_due_time(hubspot: FakeApi) -> None:
    async with serve(crm(hubspot)) as client:
        first = await client.post("/tasks/create", json=TASK)
        second = await client.post("/tasks/create", json={**TASK, "assignee": "77"})
        third = await client.post("/tasks/create", json=TASK)
    assert (first.status_code, first.json()) == (200, {"ok": True, "task_id": "9001"})
    assert second.json()["task_id"] == "9002"
    assert third.json()["task_id"] == "9003"
    owners, create, create_by_id, create_again = hubspot.requests  # the owner's email is looked up once
    assert (owners.method, owners.path, owners.query) == ("GET", "/crm/v3/owners/", {"email": ["ana@sophia.ai"],
                                                                                    "limit": ["1"]})  # fmt: skip
    assert (create.method, create.path) == ("POST", "/crm/v3/objects/tasks")
    assert create.headers["authorization"] == f"Bearer {HUBSPOT_TOKEN}"
    assert create.json == {
        "properties": {
            "hs_task_subject": "Follow up on v1.1.0",
            "hs_task_body": "Check the canary",
            "hs_task_priority": "HIGH",
            "hs_task_status": "NOT_STARTED",
            "hs_task_type": "TODO",
            "hs_timestamp": "2026-03-01T08:30:00.000Z",
            "hubspot_owner_id": "512",
        },
        "associations": [],
    }
    assert create_by_id.json["properties"]["hubspot_owner_id"] == "77"
    assert create_again.path == "/crm/v3/objects/tasks"


async def test_a_429_is_retried_once_after_retry_after(hubspot: FakeApi) -> None:
    limited = Answer(429, {"status": "error", "message": "You have reached your secondly limit.",
                           "category": "RATE_LIMITS"}, (("Retry-After", "1"),))  # fmt: skip
    async with serve(crm(hubspot)) as client:
        await client.post("/tasks/create", json={**TASK, "assignee": "77"})  # warm: no owner lookup below
        hubspot.fail_next(limited)
        response = await client.post("/tasks/create", json={**TASK, "assignee": "77"})
    assert response.status_code == 200, response.text
    _, refused, retried = hubspot.requests
    assert refused.json == retried.json
    assert retried.at - refused.at >= 1.0


async def test_a_long_retry_after_is_passed_on(hubspot: FakeApi) -> None:
    hubspot.fail_next(Answer(429, {"status": "error", "message": "daily limit"}, (("Retry-After", "3600"),)))
    async with serve(crm(hubspot)) as client:
        response = await client.post("/tasks/create", json={**TASK, "assignee": "77"})
    assert (response.status_code, response.headers["retry-after"]) == (429, "3600")
    assert len(hubspot.requests) == 1


@pytest.mark.parametrize(
    ("task", "token", "status", "error"),
    [
        ({**TASK, "assignee": "nobody@sophia.ai"}, HUBSPOT_TOKEN, 422, "HubSpot has no owner with the email"),
        (TASK, "pat-wrong", 502, "HubSpot refused the access token (HTTP 401)"),
    ],
)
async def test_hubspot_errors_become_clear_answers_without_secrets(
    hubspot: FakeApi, task: dict[str, str], token: str, status: int, error: str
) -> None:
    async with serve(crm(hubspot, token)) as client:
        response = await client.post("/tasks/create", json=task)
    assert (response.status_code, response.json()["ok"]) == (status, False)
    assert response.json()["error"].startswith(error)
    assert token not in response.text
    assert not any(r.path == "/crm/v3/objects/tasks" for r in hubspot.requests)


async def test_hubspot_validation_errors_are_422_with_hubspot_s_message(hubspot: FakeApi) -> None:
    hubspot.fail_next(Answer(400, {"status": "error", "message": "Property values were not valid",
                                   "category": "VALIDATION_ERROR"}))  # fmt: skip
    async with serve(crm(hubspot)) as client:
        response = await client.post("/tasks/create", json={**TASK, "assignee": "77"})
    assert response.status_code == 422
    assert response.json()["error"] == "HubSpot refused the task: Property values were not valid"
