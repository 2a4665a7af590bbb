"""Children of the engine die with it: a SIGKILLed engine leaves no lint or test command running."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import psutil

from tests.integration.test_checks_traffic import gone_within


def test_a_sigkilled_engine_takes_its_running_command_with_it() -> None:
    script = textwrap.dedent(
        """
        import asyncio, pathlib, psutil
        from sophia.build.commands import SubprocessRunner

        async def main():
            running = asyncio.create_task(SubprocessRunner(pathlib.Path(".")).run(["sleep", "600"], 900))
            while not psutil.Process().children():
                await asyncio.sleep(0.01)
            print(psutil.Process().children()[0].pid, flush=True)
            await running

        asyncio.run(main())
        """
    )
    engine = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert engine.stdout is not None
    child = int(engine.stdout.readline())
    assert psutil.Process(child).is_running()
    engine.kill()
    engine.wait(timeout=10)
    assert gone_within(child, 10), "the command outlived its SIGKILLed engine"
