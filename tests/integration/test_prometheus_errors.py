"""PrometheusMetrics when Prometheus is down, slow or not Prometheus: one clear PlatformError, no credentials in it.

A stopped real Prometheus, a closed port, and real HTTP servers (``HttpReceiver``) answering like a broken proxy or
a refusing Prometheus; plus the PromQL the source actually sends.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from sophia.checks.prometheus import PrometheusMetrics, errors_query, latency_buckets_query, requests_query
from sophia.engine.ports import PlatformError
from tests.conftest import free_port
from tests.fakes import prometheus as fake_prometheus
from tests.fakes.prometheus import running_prometheus
from tests.fakes.receivers import Reply, http_receiver
from tests.fakes.workloads import NAMESPACE, by_namespace

SERVICES = ["comms-mcp", "crm-mcp"]


def vector(*series: tuple[dict[str, str], str], at: float = 1700000000.5) -> Reply:
    result = [{"metric": labels, "value": [at, value]} for labels, value in series]
    return Reply.json(200, {"status": "success", "data": {"resultType": "vector", "result": result}})


def track(service: str, namespace: str, **extra: str) -> dict[str, str]:
    return {"destination_service_name": service, "destination_workload_namespace": namespace, **extra}


async def test_a_stopped_prometheus_raises_platform_error(tmp_path: Path) -> None:
    with running_prometheus(tmp_path, []) as server:
        metrics = PrometheusMetrics(server.url, timeout_s=2)
        assert await metrics.sample(by_namespace(SERVICES)) == {}  # up, but nothing scraped: no data, no error
    with pytest.raises(PlatformError, match=r"^Prometheus at http://127\.0\.0\.1:\d+ unreachable: ConnectError$"):
        await metrics.sample(by_namespace(SERVICES))


async def test_the_error_message_never_carries_the_urls_credentials() -> None:
    port = free_port()  # nothing listens here
    metrics = PrometheusMetrics(f"http://reader:s3cret@127.0.0.1:{port}/prom/", timeout_s=2)
    with pytest.raises(PlatformError) as raised:
        await metrics.sample(by_namespace(SERVICES))
    assert str(raised.value) == f"Prometheus at http://127.0.0.1:{port}/prom unreachable: ConnectError"
    assert raised.value.__cause__ is None  # nor in a chained exception's repr of the request


async def test_a_prometheus_that_does_not_answer_fails_within_the_timeout() -> None:
    with http_receiver(Reply(hang=True)) as receiver:
        metrics = PrometheusMetrics(receiver.base_url, timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(PlatformError, match=r"did not answer within 0\.3 s$"):
            await metrics.sample(by_namespace(SERVICES))
        assert time.monotonic() - started < 5  # bounded, not hanging with the server (timing: not a benchmark)


async def test_the_timeout_bounds_the_whole_sample_not_each_query() -> None:
    with http_receiver() as receiver:
        answer = vector((track("comms-mcp", "sophia"), "5"))
        receiver.reply(answer, replace(answer, delay_s=0.25), replace(answer, delay_s=0.25))
        started = time.monotonic()
        with pytest.raises(PlatformError, match=r"did not answer within 0\.4 s$"):
            await PrometheusMetrics(receiver.base_url, timeout_s=0.4).sample(by_namespace(SERVICES))
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(status=502, body="<html>Bad Gateway</html>", content_type="text/html"), "answered 502 with a body"),
        (Reply.json(200, ["not", "an", "api", "answer"]), "answered 200 with a body"),
        (
            Reply.json(400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}),
            r"refused a query \(400 bad_data: parse error at char 3\)",
        ),
        (
            Reply.json(503, {"status": "error", "errorType": "unavailable", "error": "not ready"}),
            r"refused a query \(503 unavailable: not ready\)",
        ),
        (
            Reply.json(200, {"status": "success", "data": {"resultType": "matrix", "result": []}}),
            "unexpected result: TypeError",
        ),
        (
            Reply.json(200, {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}}),
            "unexpected result: KeyError",
        ),
    ],
)
async def test_answers_that_are_not_a_usable_vector_raise_platform_error(reply: Reply, message: str) -> None:
    with http_receiver(reply) as receiver, pytest.raises(PlatformError, match=message):
        await PrometheusMetrics(receiver.base_url, timeout_s=2).sample(by_namespace(SERVICES))


async def test_sends_the_three_queries_at_the_first_ones_evaluation_time() -> None:
    with http_receiver() as receiver:
        receiver.reply(
            vector((track("comms-mcp", "sophia"), "12"), (track("comms-mcp", "sophia-canary"), "3"), at=1700000042.25),
            vector((track("comms-mcp", "sophia-canary"), "1"), at=1700000042.25),
            vector(
                (track("comms-mcp", "sophia", le="+Inf"), "12"),
                (track("comms-mcp", "sophia", le="25"), "11"),
                (track("comms-mcp", "sophia-canary", le="+Inf"), "3"),
                at=1700000042.25,
            ),
        )
        got = await PrometheusMetrics(receiver.base_url + "/", timeout_s=2).sample(by_namespace(SERVICES))
        sent = [parse_qs(request.body.decode()) for request in receiver.requests]

    assert [request.path for request in receiver.requests] == ["/api/v1/query"] * 3
    assert [form["query"] for form in sent] == [
        [requests_query(SERVICES, [NAMESPACE])],
        [errors_query(SERVICES, [NAMESPACE])],
        [latency_buckets_query(SERVICES, [NAMESPACE])],
    ]
    assert "time" not in sent[0]
    assert sent[1]["time"] == sent[2]["time"] == ["1700000042.25"]
    assert {(s, t.value): (x.requests, x.errors, x.latency_buckets) for (s, t), x in got.items()} == {
        ("comms-mcp", "stable"): (12, 0, ((25.0, 11), (float("inf"), 12))),
        ("comms-mcp", "canary"): (3, 1, ((float("inf"), 3),)),
    }


async def test_no_requests_means_no_further_queries_and_no_entries() -> None:
    with http_receiver(vector()) as receiver:
        assert await PrometheusMetrics(receiver.base_url, timeout_s=2).sample(by_namespace(SERVICES)) == {}
        assert len(receiver.requests) == 1


def test_the_promql_is_what_the_docs_show() -> None:
    assert requests_query(["comms-mcp", "crm-mcp"], [NAMESPACE]) == (
        "sum by (destination_service_name, destination_workload_namespace) (istio_requests_total"
        '{reporter="destination", destination_service_name=~"comms-mcp|crm-mcp"})'
    )
    assert 'response_code=~"5.*"' in errors_query(["comms-mcp"], [NAMESPACE])
    assert latency_buckets_query(["a.b"], [NAMESPACE]).startswith(
        "sum by (destination_service_name, destination_workload_namespace, le) "
        '(istio_request_duration_milliseconds_bucket{reporter="destination", destination_service_name=~"a\\\\.b"'
    )


@pytest.mark.parametrize(
    ("timeout_s", "window", "message"),
    [
        (1.0, "five minutes", "not a PromQL duration"),
        (1.0, "1.5m", "not a PromQL duration"),
        (0.0, None, "greater than 0"),
    ],
)
def test_bad_settings_are_refused_at_construction(timeout_s: float, window: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PrometheusMetrics("http://127.0.0.1:9090", timeout_s=timeout_s, window=window)


async def test_query_rates_refuses_a_bad_window_before_asking_anything() -> None:
    with pytest.raises(ValueError, match="not a PromQL duration"):
        await PrometheusMetrics("http://127.0.0.1:9", timeout_s=1).query_rates(by_namespace(SERVICES), "1 minute")


@pytest.mark.parametrize(("ci", "outcome"), [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_without_the_prometheus_binary_tests_skip_locally_but_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no prometheus on PATH
    monkeypatch.setattr(fake_prometheus, "FALLBACK_BINARY", tmp_path / "prometheus")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="prometheus binary not found"):
        fake_prometheus.prometheus_binary()
