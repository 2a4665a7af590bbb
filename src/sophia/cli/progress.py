"""Live progress in the terminal: one line per stage outcome, a spinner on the running stage."""

from __future__ import annotations

from rich.console import Console
from rich.status import Status

from sophia.engine.events import Event, EventKind

_ICONS = {"passed": "[green]✔[/]", "failed": "[red]✘[/]", "skipped": "[yellow]⏭[/]"}


class LiveProgress:
    """An event sink: attach it to the run's EventBus."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._status: Status | None = None

    def __call__(self, event: Event) -> None:
        print_ = self._console.print
        if event.kind is EventKind.RUN_STARTED:
            print_(f"[bold]Release {event.data.get('version')}[/] — run {event.run_id}")
        elif event.kind is EventKind.STAGE_STARTED:
            self._spin(f"{event.stage} …")
        elif event.kind is EventKind.STAGE_FINISHED:
            self._stop()
            status = str(event.data.get("status"))
            duration = event.data.get("duration_s")
            took = f" [dim]({duration:.1f}s)[/]" if isinstance(duration, float) else ""
            print_(
                f"{_ICONS.get(status, '·')} {event.stage:<16} {status}{took}  [dim]{event.data.get('detail', '')}[/]",
                highlight=False,
            )
        elif event.kind is EventKind.WEIGHTS_CHANGED:
            print_(f"  [cyan]⇄[/] {event.message}", highlight=False)
        elif event.kind is EventKind.OBSERVATION and self._status is not None:
            self._status.update(f"{event.stage} … {event.data.get('elapsed_s', 0):.0f}s, {event.message}")
        elif event.kind is EventKind.ROLLBACK_STARTED:
            self._stop()
            print_(f"[bold red]↩ rolling back:[/] {event.message}", highlight=False)
        elif event.kind is EventKind.ROLLBACK_FINISHED:
            print_(f"  {event.message}", highlight=False)
        elif event.kind is EventKind.NOTE:
            print_(f"  [dim]{event.message}[/]", highlight=False)
        elif event.kind is EventKind.RUN_FINISHED:
            self._stop()

    def _spin(self, text: str) -> None:
        self._stop()
        if self._console.is_terminal:
            self._status = self._console.status(text)
            self._status.start()
        else:
            self._console.print(f"▶ {text}", highlight=False)

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
