"""What every command shares: loading settings, reporting bad input (exit 2), the console."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from sophia.config import PLATFORM_NAMES, ConfigError, Settings, load_config

console = Console()
errors = Console(stderr=True)

EXIT_BAD_INPUT = 2


@dataclass
class AppState:
    config: Path | None = None
    profile: str | None = None
    platform: str | None = None

    def settings(self, platform: str | None = None) -> Settings:
        """The configuration with the command line's choices; a command's own ``--platform`` wins."""
        chosen = (("profile", self.profile), ("platform", platform or self.platform))
        overrides = {key: value for key, value in chosen if value}
        try:
            return load_config(self.config, overrides=overrides)
        except ConfigError as exc:
            fail(str(exc))


PlatformOption = Annotated[
    str | None,
    typer.Option("--platform", help=f"where services run: {' or '.join(PLATFORM_NAMES)} (default: sophia.yaml)"),
]


def app_state(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="configuration file (default: sophia.yaml or $SOPHIA_CONFIG)")
    ] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="policy profile, e.g. local or production")] = None,
    platform: PlatformOption = None,
) -> None:
    ctx.obj = AppState(config, profile, platform)


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, AppState) else AppState()


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """One clear line on stderr, then exit (2 = bad input, nothing changed)."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
