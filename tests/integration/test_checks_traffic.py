"""The load generator: a real child process sending labelled, mixed, open-loop traffic to a real HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap

import aiohttp
import psutil

from sophia.checks.traffic import LoadGenerator, RequestTemplate, TrafficDriver
from sophia.engine.clock import SystemClock
from sophia.engine.model import TrafficTarget
from tests.fakes.receivers import Reply, http_receiver
from tests.fakes.standins import StandIns

MIX = {
    "generic": [RequestTemplate("GET", "/api/info", None, 1)],
    "comms": [
        RequestTemplate("POST", "/slack/post", {"channel": "#load", "message": "m", "username": "u"}, 3),
        RequestTemplate("GET", "/version", None, 1),
    ],
}


async def test_it_sends_the_configured_mix_labelled_at_the_configured_rate() -> None:
    with http_receiver() as receiver:
        generator = LoadGenerator(40.0, 5.0, MIX)
        async with generator.run([TrafficTarget("comms-mcp", "comms", receiver.base_url)]) as tally:
            await asyncio.sleep(2.0)
        requests = receiver.requests
    assert 40 <= len(requests) <= 100  # 40 req/s for ~2 s, with start-up slack either way
    assert all(r.headers["x-sophia-source"] == "loadgen" for r in requests)
    paths = [r.path for r in requests]
    assert set(paths) == {"/slack/post", "/version"}
    assert paths.count("/slack/post") > paths.count("/version")  # 3 : 1
    posted = next(r for r in requests if r.path == "/slack/post")
    assert posted.json == {"channel": "#load", "message": "m", "username": "u"}
    counts = tally.services["comms-mcp"]
    assert counts["sent"] >= len(requests)
    assert counts["errors"] == 0


async def test_a_slow_target_does_not_slow_the_load_down() -> None:
    """Open loop: requests go out on schedule while earlier ones are still waiting for their answers."""
    with http_receiver(Reply(delay_s=1.0)) as receiver:
        generator = LoadGenerator(20.0, 5.0, MIX)
        async with generator.run([TrafficTarget("mcp-research", "generic", receiver.base_url)]):
            await asyncio.sleep(1.5)
        received = len(receiver.requests)
    assert received >= 20  # a closed loop would have sent about 2


async def test_errors_are_counted_in_the_tally() -> None:
    with http_receiver(Reply(status=500)) as receiver:
        async with LoadGenerator(20.0, 5.0, MIX).run([TrafficTarget("a", "generic", receiver.base_url)]) as tally:
            await asyncio.sleep(1.0)
    assert tally.services["a"]["errors"] == tally.services["a"]["answered"] > 0


async def test_hanging_targets_use_up_their_own_share_of_requests_in_flight_not_the_others() -> None:
    """Three targets hang: each holds at most ``max_in_flight`` requests, the rest of its load is dropped and
    counted, and the answering target still gets its whole rate."""
    driver = TrafficDriver(SystemClock(), 20.0, MIX, max_in_flight=4, max_in_flight_total=100, seed=1)
    with StandIns(answer=1, hang=3) as standins:
        urls = {"ok": standins.urls("answer")[0]} | {f"hang-{i}": u for i, u in enumerate(standins.urls("hang"))}
        targets = [TrafficTarget(name, "generic", url) for name, url in urls.items()]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            driving = asyncio.create_task(driver.drive(session, targets))
            await asyncio.sleep(2.0)
            driving.cancel()
            await asyncio.gather(driving, return_exceptions=True)
    ok = driver.stats["ok"]
    assert ok.answered >= 20  # 20 req/s for 2 s, with slack for a busy machine
    assert (ok.dropped, ok.errors) == (0, 0)
    for name in ("hang-0", "hang-1", "hang-2"):
        hanging = driver.stats[name]
        assert hanging.sent == 4
        assert hanging.dropped >= 10


def test_the_load_generator_dies_with_the_engine_that_started_it() -> None:
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        from sophia.checks.traffic import LoadGenerator, RequestTemplate
        from sophia.engine.model import TrafficTarget

        async def main():
            mix = {"generic": [RequestTemplate("GET", "/", None, 1)]}
            async with LoadGenerator(5.0, 1.0, mix).run([TrafficTarget("a", "generic", "http://127.0.0.1:9")]):
                print("running", flush=True)
                sys.stdin.readline()
                os._exit(137)  # the engine dies without closing anything

        asyncio.run(main())
        """
    )
    engine = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert engine.stdout is not None
    assert engine.stdin is not None
    assert engine.stdout.readline().strip() == "running"
    children = psutil.Process(engine.pid).children()
    assert len(children) == 1
    engine.stdin.write("\n")
    engine.stdin.flush()
    engine.wait(timeout=10)
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], "the load generator outlived its engine"
    assert gone


def engine_and_its_generator(script: str) -> tuple[subprocess.Popen[str], int, int]:
    """Start an engine process running ``script``; it prints its load generator's pid (and another), then waits to
    be killed."""
    engine = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True)
    assert engine.stdout is not None
    pids = [int(word) for word in engine.stdout.readline().split()]
    return engine, pids[0], pids[-1]


def gone_within(pid: int, deadline_s: float) -> bool:
    """Whether ``pid`` has exited (or is a zombie nobody reaps) by the deadline; polled, never slept on."""
    try:
        proc = psutil.Process(pid)
        proc.wait(timeout=deadline_s)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return proc.status() == psutil.STATUS_ZOMBIE
    return True


def test_a_sigkilled_engine_takes_its_running_load_generator_with_it() -> None:
    engine, child, _ = engine_and_its_generator(
        """
        import asyncio, os, sys
        from sophia.checks.traffic import LoadGenerator, RequestTemplate
        from sophia.engine.model import TrafficTarget

        async def main():
            mix = {"generic": [RequestTemplate("GET", "/", None, 1)]}
            async with LoadGenerator(5.0, 1.0, mix).run([TrafficTarget("a", "generic", "http://127.0.0.1:9")]):
                (child,) = __import__("psutil").Process().children()
                print(child.pid, flush=True)
                await asyncio.Event().wait()

        asyncio.run(main())
        """
    )
    assert psutil.Process(child).is_running()
    engine.kill()  # SIGKILL: nothing in the engine runs any more
    engine.wait(timeout=10)
    assert gone_within(child, 10), "the load generator outlived its SIGKILLed engine"


def test_an_engine_killed_before_its_generator_is_ready_leaves_nothing_behind() -> None:
    """The window the old getppid() check missed: the engine dies while the child is still starting up."""
    engine, child, holder = engine_and_its_generator(
        """
        import asyncio, os, signal, subprocess, sys
        from sophia.checks import traffic

        async def main():
            spec = {"rps": 5.0, "timeout_s": 1.0, "api_token": None, "mix": {"generic": [
                {"method": "GET", "path": "/", "body": None, "weight": 1}]},
                "targets": [{"service": "a", "kind": "generic", "url": "http://127.0.0.1:9", "headers": {}}]}
            proc = await traffic.start_child(spec)
            # Someone else holds the child's stdout too, so its "ready" does not fail on a broken pipe: only its
            # tie to the engine can end it.
            out = proc._transport.get_pipe_transport(1).get_extra_info("pipe").fileno()
            holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=(out,))
            print(proc.pid, holder.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # before the child has said it is ready

        asyncio.run(main())
        """
    )
    engine.wait(timeout=10)
    try:
        assert gone_within(child, 15), "a load generator started by a dying engine kept running"
    finally:
        for pid in (child, holder):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
