"""The dashboard's web app (Starlette + Jinja2): runs, one run live, and — with a token — the operator's buttons.

Every page and message is rendered from the run store alone (``view.build_view``). Buttons leave a request in the
store for the process executing the run (the same ``Store.request`` that ``sophia promote`` / ``abort`` /
``rollback`` use); that process acts on it at its next look.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sophia.dashboard.guard import COOKIE, Guard
from sophia.dashboard.stream import run_stream
from sophia.dashboard.view import RunView, build_view, focus
from sophia.engine.clock import Clock, SystemClock
from sophia.engine.events import Event
from sophia.engine.store import RequestAction, Store, UnknownRunError

STATIC = Path(__file__).parent / "static"
PANELS = ("stages", "services", "readiness", "evidence", "health", "decisions", "rollback", "notifications", "log")
ACTIONS = {"promote": RequestAction.PROMOTE, "abort": RequestAction.ABORT, "rollback": RequestAction.ROLLBACK}
MAX_FORM_BYTES = 4096
RUN_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class Dashboard:
    def __init__(self, store: Store, *, token: str | None = None, clock: Clock | None = None,
                 poll_s: float = 0.25) -> None:  # fmt: skip
        self.store = store
        self.clock = clock or SystemClock()
        self.poll_s = poll_s
        self.guard = Guard.with_token(token) if token else None
        self.templates = Environment(
            loader=PackageLoader("sophia.dashboard", "templates"),
            autoescape=select_autoescape(("html",)),
            enable_async=False,
        )

    # -- rendering ---------------------------------------------------------------------------------------------

    def _html(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.templates.get_template(template).render(**context), status_code=status)

    async def view(self, run_id: str, events: list[Event] | None = None) -> RunView:
        record = await self.store.load(run_id)
        events = await self.store.events(run_id) if events is None else events
        return build_view(record, events, self.clock.now())

    def panels(self, view: RunView, csrf: str | None) -> dict[str, str]:
        module = self.templates.get_template("panels.html").make_module({"csrf": csrf, "guarded": bool(self.guard)})
        return {name: str(getattr(module, name)(view)) for name in (*PANELS, "actions")}

    async def payload(
        self, run_id: str, csrf: str | None, events: list[Event] | None = None
    ) -> tuple[dict[str, Any], bool]:
        view = await self.view(run_id, events)
        data = {"phase": view.phase, "terminal": view.terminal, "events_seen": view.events_seen,
                "panels": self.panels(view, csrf), "charts": view.charts(), "focus": focus(view)}  # fmt: skip
        return data, view.terminal

    # -- sessions ----------------------------------------------------------------------------------------------

    def _csrf(self, request: Request) -> str | None:
        if self.guard is None:
            return None
        session = self.guard.session_of(request.cookies.get(COOKIE))
        return self.guard.csrf_for(session) if session else None

    # -- routes ------------------------------------------------------------------------------------------------

    async def runs_page(self, request: Request) -> Response:
        limit = _int_param(request, "limit", 50, 1, 500)
        if isinstance(limit, Response):
            return limit
        runs = await self.store.list_runs(limit)
        return self._html("runs.html", runs=runs, guarded=bool(self.guard), signed_in=bool(self._csrf(request)))

    async def runs_api(self, request: Request) -> Response:
        limit = _int_param(request, "limit", 50, 1, 500)
        if isinstance(limit, Response):
            return limit
        runs = await self.store.list_runs(limit)
        return JSONResponse({"runs": [
            {"run_id": r.run_id, "version": r.version, "phase": r.phase.value,
             "outcome": r.outcome.value if r.outcome else None, "created_at": r.created_at.isoformat(),
             "finished_at": r.finished_at.isoformat() if r.finished_at else None, "actor": r.actor}
            for r in runs]})  # fmt: skip

    async def run_page(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if (bad := _check_run_id(run_id)) is not None:
            return bad
        try:
            data, _ = await self.payload(run_id, self._csrf(request))
        except UnknownRunError as exc:
            return self._html("error.html", 404, message=str(exc))
        return self._html("run.html", run_id=run_id, data=data, panels=data["panels"])

    async def run_api(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if (bad := _check_run_id(run_id)) is not None:
            return bad
        try:
            view = await self.view(run_id)
        except UnknownRunError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        body = {key: value for key, value in vars(view).items() if key != "series"}
        body["stages"] = [vars(s) for s in view.stages]
        body["services"] = [vars(s) for s in view.services]
        body["decisions"] = [vars(d) for d in view.decisions]
        body["charts"] = view.charts()
        return JSONResponse(body)

    async def stream(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if (bad := _check_run_id(run_id)) is not None:
            return bad
        csrf = self._csrf(request)
        try:
            await self.store.load(run_id)
        except UnknownRunError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)

        async def render(events: list[Event]) -> tuple[dict[str, Any], bool]:
            return await self.payload(run_id, csrf, events)

        body = run_stream(self.store, run_id, render, request.is_disconnected, self.clock, poll_s=self.poll_s)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    async def login(self, request: Request) -> Response:
        if self.guard is None:
            return _not_found()
        form = await _form(request)
        if isinstance(form, Response):
            return form
        if not self.guard.accepts_token(form.get("token", "")):
            return self._html("error.html", 403, message="wrong token")
        target = form.get("next", "/")
        response = RedirectResponse(target if _local_path(target) else "/", status_code=303)
        response.set_cookie(COOKIE, self.guard.new_session(), httponly=True, samesite="strict", path="/")
        return response

    async def act(self, request: Request) -> Response:
        checked = await self._authorised(request)
        if isinstance(checked, Response):
            return checked
        run_id, action, form = checked
        try:
            record = await self.store.load(run_id)
        except UnknownRunError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        if record.phase.terminal:
            return JSONResponse({"error": f"run {run_id} already ended: {record.phase.value}"}, status_code=409)
        reason = (form.get("reason") or f"{action.value} from the dashboard")[:200]
        made = await self.store.request(run_id, action, "dashboard", reason)
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"/runs/{run_id}", status_code=303)
        body = {"run_id": run_id, "action": made.action.value, "requested_by": made.requested_by,
                "requested_at": made.requested_at.isoformat()}  # fmt: skip
        return JSONResponse(body, status_code=202)

    async def _authorised(self, request: Request) -> tuple[str, RequestAction, dict[str, str]] | Response:
        """The run, the action and the form of a request that passed every check; else the refusal to send."""
        if self.guard is None:
            return _not_found()
        run_id, name = request.path_params["run_id"], request.path_params["action"]
        action = ACTIONS.get(name)
        session = self.guard.session_of(request.cookies.get(COOKIE))
        refusal = (
            _check_run_id(run_id)
            or (_error(404, f"unknown action {name!r} (one of: {', '.join(ACTIONS)})") if action is None else None)
            or (None if _same_origin(request) else _error(403, "cross-origin request refused"))
            or (_error(403, "sign in with the dashboard's token first") if session is None else None)
        )
        if refusal is not None or action is None or session is None:  # (the last two were refused just above)
            return refusal or _not_found()
        form = await _form(request)
        if isinstance(form, Response):
            return form
        if not self.guard.csrf_ok(session, form.get("csrf", "")):
            return _error(403, "missing or wrong CSRF token")
        return run_id, action, form


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _not_found() -> Response:
    return JSONResponse({"error": "not found: the dashboard is read-only (started without a token)"}, status_code=404)


def _check_run_id(run_id: str) -> Response | None:
    if not run_id or len(run_id) > 128 or not set(run_id) <= RUN_ID_CHARS:
        return JSONResponse({"error": "a run id is 1–128 letters, digits, '-', '_' or '.'"}, status_code=400)
    return None


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int | Response:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        return JSONResponse({"error": f"{name} must be an integer from {low} to {high}"}, status_code=400)
    return value


async def _form(request: Request) -> dict[str, str] | Response:
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        return JSONResponse({"error": "send a form (application/x-www-form-urlencoded)"}, status_code=415)
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return JSONResponse({"error": "form too large"}, status_code=413)
    try:
        fields = parse_qs(body.decode(), strict_parsing=bool(body), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return JSONResponse({"error": "malformed form"}, status_code=400)
    return {key: values[0] for key, values in fields.items()}


def _local_path(value: str) -> bool:
    """Only a path on this server may follow a sign-in (never another site: no open redirect)."""
    return value.startswith("/") and not value.startswith(("//", "/\\"))


def _same_origin(request: Request) -> bool:
    """No Origin (a non-browser client) passes; a browser's Origin must name this very host and port."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme == "http" and parts.netloc == request.headers.get("host")


def create_app(store: Store, *, token: str | None = None, clock: Clock | None = None, poll_s: float = 0.25,
               allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Starlette:  # fmt: skip
    """The dashboard on ``store``; with ``token``, the buttons (else every action answers 404 and changes nothing).

    ``allowed_hosts`` guards against DNS rebinding: a page on another site cannot reach the dashboard through a name
    that resolves to 127.0.0.1.
    """
    dash = Dashboard(store, token=token, clock=clock, poll_s=poll_s)
    routes = [
        Route("/", dash.runs_page),
        Route("/api/runs", dash.runs_api),
        Route("/api/runs/{run_id}", dash.run_api),
        Route("/runs/{run_id}", dash.run_page),
        Route("/runs/{run_id}/events", dash.stream),
        Route("/login", dash.login, methods=["POST"]),
        Route("/runs/{run_id}/actions/{action}", dash.act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))])
