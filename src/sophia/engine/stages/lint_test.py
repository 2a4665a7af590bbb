"""lint-test: the configured lint and test commands (ruff and pytest by default) must all succeed."""

from __future__ import annotations

import shlex

from sophia.engine.context import RunContext
from sophia.engine.stages.base import StageResult, failed, passed


class LintTest:
    name = "lint-test"

    async def run(self, ctx: RunContext) -> StageResult:
        config = ctx.settings.lint_test
        results = []
        for argv in config.commands:
            result = await ctx.ports.commands.run(argv, config.timeout_s)
            results.append({"command": shlex.join(argv), "returncode": result.returncode, "seconds": result.duration_s})
            if result.returncode != 0:
                tail = result.output_tail.strip().splitlines()[-15:]
                return failed(
                    f"`{shlex.join(argv)}` exited {result.returncode}: " + " | ".join(tail)[-800:],
                    commands=results,
                )
        return passed(f"{len(results)} commands succeeded", commands=results)
