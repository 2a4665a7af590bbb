"""``sophia k8s render``: write (or check) ``deploy/k8s`` from the same code the Kubernetes platform applies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sophia import wiring
from sophia.cli.common import console, errors, state

app = typer.Typer(help="Kubernetes manifests for the services (deploy/k8s).", no_args_is_help=True)


@app.command()
def render(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", help="folder to write (default: deploy/k8s of the checkout)")
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="only compare; exit 1 when the folder differs")] = False,
) -> None:
    """Render the Kustomize base and its canary and production overlays."""
    settings = state(ctx).settings()
    folder = out or settings.source_dir / "deploy" / "k8s"
    files = wiring.kubernetes_manifests(settings)
    if check:
        stale = sorted(p for p, text in files.items() if not (folder / p).is_file() or (folder / p).read_text() != text)
        if stale:
            errors.print(f"{folder} differs from what the platform applies: {', '.join(stale)}; "
                         "run `sophia k8s render`", highlight=False)  # fmt: skip
            raise typer.Exit(1)
        console.print(f"{folder}: {len(files)} files, as rendered", highlight=False)
        return
    for path, text in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    console.print(f"wrote {len(files)} files to {folder}", highlight=False)
