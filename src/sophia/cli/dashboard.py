"""``sophia dashboard``: serve the runs in the run store, live, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from typing import Annotated

import typer

from sophia import wiring
from sophia.cli.common import PlatformOption, console, fail, state
from sophia.config import ConfigError
from sophia.engine.store import StoreError


def dashboard(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="port on 127.0.0.1", min=1, max=65535)] = 8700,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="SOPHIA_DASHBOARD_TOKEN",
            help="enables promote/abort/rollback for whoever signs in with it "
            "(at least 16 characters; prefer the environment variable)",
            show_default=False,
        ),
    ] = None,
    platform: PlatformOption = None,
) -> None:
    """A local web view of the runs: stages, weights, canary against stable, decisions, rollback — live."""
    import uvicorn

    from sophia.dashboard.app import create_app

    settings = state(ctx).settings(platform)
    if token is not None and len(token) < 16:
        fail("the dashboard token must be at least 16 characters")

    try:  # bound before anything else, so a taken port is a clear error (exit 2), not a server's log line
        listener = socket.create_server(("127.0.0.1", port))
    except OSError as exc:
        fail(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}")

    async def serve() -> None:
        async with wiring.run_store(settings) as store:
            app = create_app(store, token=token)
            config = uvicorn.Config(app, log_level="warning", lifespan="off")
            mode = "promote/abort/rollback for token holders" if token else "read-only"
            console.print(f"dashboard on http://127.0.0.1:{port}/ ({mode}); Ctrl-C stops it", highlight=False)
            await uvicorn.Server(config).serve(sockets=[listener])

    try:
        asyncio.run(serve())
    except (ConfigError, StoreError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:  # uvicorn shuts down on Ctrl-C, then re-raises it: that is how a person stops it
        console.print("dashboard stopped", highlight=False)
    finally:
        listener.close()
