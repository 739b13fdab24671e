"""The dashboard's Starlette application: pages, trace data, live streams, operator requests.

Every read goes through `labctl.recording`'s readers in a worker thread (they block on the
database); live updates are server-sent events (sse-starlette) that poll the database, because
the writers are other processes (one `labctl run` or `labctl campaign` per station, or several)
and the database is the one place they all meet. The only write is an operator request, through
`Recorder.request_control`, the path `labctl pause/resume/abort` takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import anyio
from jinja2 import Environment, PackageLoader, select_autoescape
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from labctl.analysis.plots import PLOT_KINDS, PlotError, figure_for
from labctl.recording.leases import RunNotHeld
from labctl.recording.live_reads import (
    LIVE_STATUSES,
    events_after,
    last_value,
    points_after,
    results_with_quality,
    run_status,
    runs_by_status,
)
from labctl.recording.queries import get_run, run_steps
from labctl.recording.recorder import Recorder
from labctl.web import exports, views
from labctl.web.security import SESSION_COOKIE, Guard, Refusal
from labctl.web.trace_cache import TraceCache

#: Buckets of a run page's trace: about one per horizontal pixel of a wide chart.
TRACE_BUCKETS = 1200
#: Runs whose traces are prepared at start-up: the live ones and this many recent others.
WARM_RUNS = 20
#: At most this many new points per message of a run page's stream (the rest follow at once).
STREAM_POINTS = 5000
#: How often a live stream looks for new rows (the run's own poll is 1 s on a real station).
POLL_S = 0.5
OPERATOR_ACTIONS = ("pause", "resume", "abort")
FIGURE_FORMATS = {"png": "image/png", "svg": "image/svg+xml"}

_figure_lock = threading.Lock()  # matplotlib's state is not thread-safe across figures' draws


def _templates() -> Environment:
    env = Environment(loader=PackageLoader("labctl.web", "templates"),
                      autoescape=select_autoescape(["html"]))
    env.filters["hms"] = views.hms
    env.filters["ts"] = lambda t: "" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")
    env.filters["num"] = lambda x, fmt="{:.4g}": "" if x is None else fmt.format(x)
    return env


class Dashboard:
    """The application's state: the database, the operator guard, the templates."""

    def __init__(self, engine: Any, guard: Guard, poll_s: float = POLL_S) -> None:
        self.engine = engine
        self.guard = guard
        self.poll_s = poll_s
        self.recorder = Recorder(engine)
        self.env = _templates()
        self.traces = TraceCache(engine, TRACE_BUCKETS)
        self.db_url = engine.url.render_as_string(hide_password=False)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """At start-up, prepare the traces of the runs the overview lists, in the background."""
        grouped = await self.read(runs_by_status, WARM_RUNS)
        self.traces.warm([r.id for runs in grouped.values() for r in runs])
        yield

    async def read(self, fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, self.engine, *args)

    def render(self, name: str, request: Request | None = None, **ctx: Any) -> str:
        if request is not None:
            ctx.setdefault("signed_in", self.guard.signed_in(request))
            ctx.setdefault("read_only", self.guard.read_only)
            ctx.setdefault("csrf", "" if self.guard.read_only else self.guard.csrf_token())
        return self.env.get_template(name).render(**ctx)

    # ---- pages -------------------------------------------------------------------------------
    async def overview_page(self, request: Request) -> Response:
        data = await self.read(views.overview)
        return HTMLResponse(self.render("overview.html", request, ov=data))

    async def run_page(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        run = await self.read(get_run, run_id)
        if run is None:
            raise HTTPException(404, f"no run {run_id} in this database")
        steps = await self.read(run_steps, run_id)
        events = await self.read(events_after, run_id, 0)
        results = await self.read(results_with_quality, run_id)
        last = await self.read(last_value, run_id)
        status = await self._status_context(request, run_id)
        return HTMLResponse(self.render(
            "run.html", request, run=run, steps=steps, events=events, results=results,
            figure_kinds=PLOT_KINDS, after_point=0 if last is None else last.point_id,
            after_event=events[-1].id if events else 0, **status))

    async def _status_context(self, request: Request, run_id: int) -> dict[str, Any]:
        status = await self.read(run_status, run_id)
        last = await self.read(last_value, run_id)
        planned = await self.read(views.planned_s, run_id)
        return {"run_id": run_id, "status": status, "last": last, "planned_s": planned,
                "live": status is not None and status[0] in LIVE_STATUSES,
                "signed_in": self.guard.signed_in(request)}

    # ---- data --------------------------------------------------------------------------------
    async def trace(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if await self.read(get_run, run_id) is None:
            raise HTTPException(404, f"no run {run_id} in this database")
        body = await anyio.to_thread.run_sync(self.traces.trace_json, run_id)
        return Response(body, media_type="application/json")

    async def figure(self, request: Request) -> Response:
        run_id, kind, fmt = (request.path_params[k] for k in ("run_id", "kind", "fmt"))
        if fmt not in FIGURE_FORMATS:
            raise HTTPException(404, f"figures come as {', '.join(FIGURE_FORMATS)}")
        try:
            body = await anyio.to_thread.run_sync(self._draw, run_id, kind, fmt)
        except PlotError as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(body, media_type=FIGURE_FORMATS[fmt])

    def _draw(self, run_id: int, kind: str, fmt: str) -> bytes:
        import matplotlib.pyplot as plt

        with _figure_lock:
            fig = figure_for(self.engine, run_id, kind)
            try:
                buf = io.BytesIO()
                fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight")
            finally:
                plt.close(fig)
        return buf.getvalue()

    async def export(self, request: Request) -> Response:
        run_id, fmt = request.path_params["run_id"], request.path_params["fmt"]
        if fmt not in exports.FORMATS:
            raise HTTPException(404, f"exports come as {', '.join(exports.FORMATS)}")
        try:
            made = await anyio.to_thread.run_sync(exports.export, self.db_url, run_id, fmt)
        except exports.ExportFailed as exc:
            raise HTTPException(409, str(exc)) from None
        return FileResponse(made.path, media_type=made.media_type, filename=made.path.name,
                            background=BackgroundTask(made.remove))

    # ---- live streams ------------------------------------------------------------------------
    async def overview_stream(self, request: Request) -> Response:
        async def messages() -> AsyncIterator[dict[str, str]]:
            sent = None
            while True:
                html = self.render("_overview_body.html", request,
                                   ov=await self.read(views.overview))
                if html != sent:
                    sent = html
                    yield {"event": "overview", "data": html}
                await asyncio.sleep(self.poll_s * 4)

        return EventSourceResponse(messages(), ping=15)

    async def run_stream(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            after_point = int(request.query_params.get("after", 0))
            after_event = int(request.query_params.get("events", 0))
        except ValueError:
            raise HTTPException(400, "after and events must be row ids") from None

        async def messages() -> AsyncIterator[dict[str, str]]:
            nonlocal after_point, after_event
            sent = None
            while True:
                points = await self.read(points_after, run_id, after_point, STREAM_POINTS)
                if points:
                    after_point = points[-1][0]
                    yield {"event": "points", "data": json.dumps(
                        [[None if v != v else v for v in row] for row in points])}  # NaN: null
                    if len(points) == STREAM_POINTS:
                        continue  # more are waiting: send them before sleeping
                events = await self.read(events_after, run_id, after_event)
                if events:
                    after_event = events[-1].id
                    yield {"event": "events", "data": self.render("_events.html",
                                                                  events=events)}
                ctx = await self._status_context(request, run_id)
                html = self.render("_run_status.html", request, **ctx)
                if html != sent:
                    sent = html
                    yield {"event": "status", "data": html}
                await asyncio.sleep(self.poll_s)

        return EventSourceResponse(messages(), ping=15)

    # ---- operator ----------------------------------------------------------------------------
    async def sign_in(self, request: Request) -> Response:
        form = await request.form()
        refusal = self.guard.check_sign_in(request, str(form.get("token", "")))
        back = str(form.get("next", "/"))
        if not back.startswith("/") or back.startswith("//"):
            back = "/"
        if refusal is not None:
            return HTMLResponse(self.render("refused.html", reason=refusal.value, back=back),
                                status_code=403)
        response = RedirectResponse(back, status_code=303)
        response.set_cookie(SESSION_COOKIE, self.guard.session_value(), httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def sign_out(self, request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def control(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        form = await request.form()
        csrf = form.get("csrf")
        refusal = self.guard.check_change(request, None if csrf is None else str(csrf))
        if refusal is not None:
            return _refused(refusal)
        action = str(form.get("action", ""))
        if action not in OPERATOR_ACTIONS:
            return HTMLResponse(f"unknown action {action!r}; expected one of "
                                f"{', '.join(OPERATOR_ACTIONS)}", status_code=400)
        try:
            accepted = await anyio.to_thread.run_sync(self.recorder.request_control, run_id,
                                                      action)
        except RunNotHeld as exc:  # its holder is gone or silent: nobody would act on it
            return HTMLResponse(f"{exc}; nothing requested", status_code=409)
        if not accepted:
            return HTMLResponse(f"run {run_id} is not running", status_code=409)
        return HTMLResponse(f"{action} requested for run {run_id}")


def _refused(refusal: Refusal) -> Response:
    code = 401 if refusal is Refusal.NOT_SIGNED_IN else 403
    return HTMLResponse(refusal.value, status_code=code)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return HTMLResponse(str(exc.detail), status_code=exc.status_code)


def create_app(engine: Any, guard: Guard, poll_s: float = POLL_S) -> Starlette:
    """The dashboard on `engine` (from `labctl.recording.database.open_database`)."""
    d = Dashboard(engine, guard, poll_s)
    static = StaticFiles(directory=str(resources.files("labctl.web") / "static"))
    routes = [
        Route("/", d.overview_page),
        Route("/runs/{run_id:int}", d.run_page),
        Route("/runs/{run_id:int}/trace.json", d.trace),
        Route("/runs/{run_id:int}/figures/{kind}.{fmt}", d.figure),
        Route("/runs/{run_id:int}/export.{fmt}", d.export),
        Route("/runs/{run_id:int}/control", d.control, methods=["POST"]),
        Route("/live/overview", d.overview_stream),
        Route("/live/runs/{run_id:int}", d.run_stream),
        Route("/sign-in", d.sign_in, methods=["POST"]),
        Route("/sign-out", d.sign_out, methods=["POST"]),
        Mount("/static", static, name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error},
                     lifespan=d.lifespan)
