"""The Recorder: the one path from the engine to the database.

The engine never calls it: `RecordingSink` subscribes it to the engine's event bus as the
critical sink (a write that fails for good stops the engine: the bus turns the error into the
engine's `SinkFailure`), and maps the engine's run-local step numbers to step rows.

Durability contract (tested in tests/recording/test_durability.py):
  * run, step, event and result rows are committed when they are written;
  * points are buffered and committed at least every `flush_interval_s` (1 s of wall time) and
    at every step end, so a process that dies loses at most the last second of points;
  * nothing the recorder has acknowledged by returning from `flush()` is ever lost.

How rows are put into the tables is a `Writer`'s business (labctl/recording/writers.py): by
default the backend's fast path (`executemany` of plain tuples on SQLite, `COPY ... FROM STDIN`
on PostgreSQL), or with `writer="reference"` plain SQLAlchemy Core, which stores the same rows.
The recorder keeps what writers never do: when to write, which transaction, retries.
Transient database errors (a locked SQLite file, a dropped PostgreSQL connection) are retried
with backoff before the error reaches the engine, which then puts the cell in a safe state.
"""

from __future__ import annotations

import cmath
import datetime as dt
import functools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat
from typing import Any, ParamSpec, TypeVar

import numpy as np
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from labctl import interrupts
from labctl.engine import events as ev
from labctl.recording import history, leases
from labctl.recording import models as m
from labctl.recording.writers import EIS_COLUMNS, POINT_COLUMNS, Writer, WriterName, make_writer

__all__ = ["EIS_COLUMNS", "POINT_COLUMNS", "Recorder", "RecordingError", "RecordingSink"]


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


P = ParamSpec("P")
T = TypeVar("T")


class RecordingError(RuntimeError):
    """The database could not take a write, even after retries (server gone, disk full).

    The engine answers this by switching every channel off; what was committed stays.
    """


_retry_transient = retry(
    retry=retry_if_exception(_transient),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.05, max=2.0),
    reraise=True,
)


def _db_write(fn: Callable[P, T]) -> Callable[P, T]:
    """One database write: a plain first attempt, then transient errors retried with backoff,
    then one `RecordingError`. A stop signal never lands inside it: signals are acted on at
    the engine's safe points (`labctl.interrupts`); the write is only marked as in progress.

    tenacity's wrapper costs tens of µs per call even when nothing fails, and the engine makes
    thousands of these calls per campaign (every step start and end, every flush), so it only
    steps in after a failure. Every method wrapped here is one transaction, rolled back on
    error, so attempting it again is safe.
    """
    retried = _retry_transient(fn)

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        with interrupts.database_write():
            try:
                return fn(*args, **kwargs)
            except sa_exc.SQLAlchemyError:
                pass
            try:
                return retried(*args, **kwargs)
            except sa_exc.SQLAlchemyError as exc:
                detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                raise RecordingError(f"database write failed ({fn.__name__}): {detail}") from exc

    return call


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _f(x: float | None) -> float | None:
    """Python float for the DB driver; NaN means 'not measured' and is stored as NULL."""
    if x is None:
        return None
    x = float(x)
    return None if x != x else x


class Recorder:
    """Buffers and commits a run's rows under the durability contract above.

    `writer` says how rows reach the tables: "fast" (the default: the backend's bulk path),
    "reference" (plain SQLAlchemy Core, the same rows, slower), or a `Writer` of one's own.
    """

    def __init__(
        self, engine: Engine, flush_interval_s: float = 1.0, max_buffer_rows: int = 20_000,
        writer: WriterName | Writer = "fast",
    ) -> None:
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.max_buffer_rows = max_buffer_rows
        self.writer: Writer = make_writer(engine, writer)
        self._points: list[Sequence[Any]] = []  # rows already shaped (add_rows)
        # add_points batches, kept as numpy blocks until a flush turns them into rows: a
        # buffer of ~20k live row tuples made the cyclic GC rescan them on every collection,
        # which cost more than building the tuples
        self._chunks: list[tuple[int, np.ndarray, np.ndarray | float | None]] = []
        self._chunk_rows = 0
        self._eis: list[Sequence[Any]] = []
        self._last_flush = time.monotonic()
        self.rows_written = 0
        self._renew_due: dict[int, float] = {}  # run id -> monotonic time its lease is renewed

    # ---- run lifecycle -------------------------------------------------------------------
    @_db_write
    def start_run(
        self,
        *,
        cell: dict[str, Any],
        protocol_name: str,
        protocol_text: str,
        protocol_sha256: str,
        schema_version: int,
        station: str,
        simulated: bool,
        operator: str | None,
        labctl_version: str,
        potentiostat: dict[str, Any] | None = None,
        channel: int | None = None,
        seed: int | None = None,
        pid: int | None = None,
    ) -> int:
        """Create (or reuse) the cell, protocol and instrument rows and open a run."""
        with self.engine.begin() as conn:
            cell_id = self._upsert_cell(conn, cell)
            protocol_id = conn.scalar(
                select(m.Protocol.id).where(m.Protocol.sha256 == protocol_sha256)
            )
            if protocol_id is None:
                protocol_id = conn.scalar(
                    m.Protocol.__table__.insert()
                    .values(
                        name=protocol_name, sha256=protocol_sha256,
                        schema_version=schema_version, yaml_text=protocol_text,
                        created_at=_now(),
                    )
                    .returning(m.Protocol.id)
                )
            instrument_id = self._instrument_id(conn, potentiostat) if potentiostat else None
            now = _now()
            run_id = int(
                conn.scalar(
                    m.Run.__table__.insert()
                    .values(
                        cell_id=cell_id, protocol_id=protocol_id, potentiostat_id=instrument_id,
                        channel=channel, station=station, simulated=simulated,
                        operator=operator, seed=seed, labctl_version=labctl_version,
                        started_at=now, heartbeat_at=now, pid=pid, status="running",
                    )
                    .returning(m.Run.id)
                )
            )
            leases.hold_run(conn, run_id)  # this process holds the run from its first row
            return run_id

    def _upsert_cell(self, conn: Connection, cell: dict[str, Any]) -> int:
        """The cell row of `cell['id']`: reused when the description is the recorded one,
        created when the id is new; a changed description is refused (CellHistoryConflict,
        see labctl.recording.history) — a recorded run's cell is never rewritten."""
        found = history.check_recorded(conn, cell)
        if found is not None:
            return found
        anode = cell["anode"]
        values = dict(
            anode_material=anode["material"], k_wt_pct=anode.get("k_wt_pct"),
            alloy_mass_mg=anode.get("alloy_mass_mg"),
            counter_electrode=cell.get("counter_electrode", "Na"),
            electrolyte=cell.get("electrolyte", ""), coating=cell.get("coating"),
            area_cm2=cell[history.RESOLVED_AREA_KEY], diameter_mm=cell.get("diameter_mm"),
            temperature_C=cell.get("temperature_C"), notes=cell.get("notes"),
            description=history.description_of(cell),
        )
        return int(
            conn.scalar(
                m.Cell.__table__.insert()
                .values(name=cell["id"], created_at=_now(), **values)
                .returning(m.Cell.id)
            )
        )

    def _instrument_id(self, conn: Connection, info: dict[str, Any]) -> int:
        found = conn.scalar(
            select(m.Instrument.id).where(
                m.Instrument.name == info["name"], m.Instrument.simulated == info["simulated"]
            )
        )
        if found is not None:
            return int(found)
        return int(
            conn.scalar(
                m.Instrument.__table__.insert()
                .values(created_at=_now(), **info)
                .returning(m.Instrument.id)
            )
        )

    @_db_write
    def end_run(self, run_id: int, status: str, end_reason: str | None = None) -> None:
        self.flush()
        with self.engine.begin() as conn:
            conn.execute(
                update(m.Run)
                .where(m.Run.id == run_id)
                .values(status=status, end_reason=end_reason, ended_at=_now(), control=None)
            )
            leases.release_run(conn, run_id)

    @_db_write
    def reconcile_stale_runs(self) -> list[int]:
        """Runs whose holder is known gone (a process on this host that no longer exists) are
        recorded as 'interrupted'; their ids are returned.

        Ownership, not clocks (labctl.recording.leases): a run whose holder exists — even
        stopped for hours — is left alone, and so is one held on another host whose lease
        expired (silent: it may come back). The channels of a gone holder are switched off by
        the next labctl on their station, which records that on the run; its data up to its
        last commit is kept.
        """
        with self.engine.begin() as conn:
            open_ids = list(conn.scalars(
                select(m.Run.id).where(m.Run.status.in_(("running", "paused")))))
            gone = {i: st for i, st in leases.run_holders(conn, open_ids).items()
                    if st.liveness is leases.Liveness.GONE}
            for run_id, state in gone.items():
                done = conn.execute(
                    update(m.Run).where(m.Run.id == run_id,
                                        m.Run.status.in_(("running", "paused")))
                    .values(status="interrupted", ended_at=_now(), control=None,
                            end_reason=leases.interrupted_reason(state)))
                if not done.rowcount:  # ended meanwhile by someone else
                    continue
                leases.release_run(conn, run_id)
                conn.execute(m.Event.__table__.insert(), [dict(
                    run_id=run_id, at=_now(), kind="fault", severity="error", data={
                        "holder_host": state.holder.host, "holder_pid": state.holder.pid},
                    message=f"run found without its holder ({state.holder.describe()} is "
                            "gone); marked interrupted")])
        return sorted(gone)

    @_db_write
    def heartbeat(self, run_id: int) -> str | None:
        """Return any pending operator request (pause/resume/abort); every few seconds also
        renew this process's leases of the run and of its channels."""
        due = time.monotonic() >= self._renew_due.get(run_id, 0.0)
        with self.engine.begin() as conn:
            if due:
                conn.execute(update(m.Run).where(m.Run.id == run_id)
                             .values(heartbeat_at=_now()))
                leases.renew(conn, run_id)
            control = conn.scalar(select(m.Run.control).where(m.Run.id == run_id))
        if due:
            self._renew_due[run_id] = time.monotonic() + leases.RENEW_EVERY_S
        return control

    @_db_write
    def request_control(self, run_id: int, action: str) -> bool:
        """Ask a running engine (possibly in another process) to pause, resume or abort.

        False if the run is not running or paused. Raises `leases.RunNotHeld` (and asks
        nothing) when the run's holder is gone or silent: nobody would act on the request.
        """
        with self.engine.begin() as conn:
            state = leases.run_holders(conn, [run_id]).get(run_id)
            if state is not None and state.liveness is not leases.Liveness.LIVE:
                raise leases.RunNotHeld(run_id, state)
            res = conn.execute(
                update(m.Run)
                .where(m.Run.id == run_id, m.Run.status.in_(("running", "paused")))
                .values(control=action)
            )
            return bool(res.rowcount)

    @_db_write
    def set_run_status(self, run_id: int, status: str, clear_control: bool = True) -> None:
        values: dict[str, Any] = {"status": status}
        if clear_control:
            values["control"] = None
        with self.engine.begin() as conn:
            conn.execute(update(m.Run).where(m.Run.id == run_id).values(**values))

    # ---- steps ---------------------------------------------------------------------------
    @_db_write
    def start_step(
        self, run_id: int, index: int, kind: str, name: str, params: dict[str, Any],
        t_s: float, parent_id: int | None = None,
    ) -> int:
        with self.engine.begin() as conn:
            return self.writer.insert_step(conn, dict(
                run_id=run_id, parent_id=parent_id, index=index, kind=kind, name=name,
                params=params, started_at=_now(), t_start_s=t_s, status="running",
            ))

    def end_step(self, step_id: int, status: str, end_reason: str | None, t_s: float) -> None:
        """Commit the step's last points and its end in one transaction.

        One commit instead of two per step: the points are durable at the step end as the
        contract says, and a step is never seen as ended without its points.
        """
        self._flush(step_end=(step_id, status, end_reason, t_s))

    # ---- data ----------------------------------------------------------------------------
    def add_points(
        self, step_id: int, t_s: np.ndarray, E_V: np.ndarray, I_mA: np.ndarray,
        Q_mAh: np.ndarray, P_MPa: np.ndarray | float | None = None,
    ) -> None:
        """Buffer a batch of points (numpy columns); committed within a second."""
        n = len(t_s)
        if n == 0:
            return
        # one copy of the four columns (the caller may reuse its arrays before the flush)
        block = np.array((t_s, E_V, I_mA, Q_mAh), dtype=float)
        p = P_MPa if P_MPa is None or isinstance(P_MPa, float) else np.array(P_MPa, dtype=float)
        self._chunks.append((step_id, block, p))
        self._chunk_rows += n
        self.maybe_flush()

    def _buffered(self) -> int:
        return len(self._points) + self._chunk_rows

    def _take_points(self) -> list[Sequence[Any]]:
        """The buffered point rows as POINT_COLUMNS tuples, in arrival order; empties the buffer.

        The tuples hold exactly what `ndarray.tolist()` gives per column (Python floats) and the
        pressure as passed (None or NaN stay as they are: NULL in the database), as when rows
        were built per poll.
        """
        rows = self._points
        if self._chunks:
            chunks = self._chunks
            cols = np.concatenate([b for _, b, _ in chunks], axis=1).tolist()
            sids = chain.from_iterable(repeat(sid, b.shape[1]) for sid, b, _ in chunks)
            ps = chain.from_iterable(
                p.tolist() if isinstance(p, np.ndarray) else repeat(p, b.shape[1])
                for _, b, p in chunks
            )
            rows = rows + list(zip(sids, *cols, ps)) if rows else list(zip(sids, *cols, ps))
        self._points = []
        self._chunks = []
        self._chunk_rows = 0
        return rows

    def add_rows(self, rows: Sequence[Sequence[Any]]) -> None:
        """Buffer point rows already shaped as POINT_COLUMNS tuples (bulk import path)."""
        if self._chunks:  # keep arrival order
            self._points = self._take_points()
        self._points.extend(rows)
        self.maybe_flush()

    def add_eis(self, step_id: int, rows: Iterable[dict[str, float | None]]) -> None:
        for r in rows:
            self._eis.append(
                (step_id, *(_f(r.get(c)) for c in EIS_COLUMNS[1:]))
            )
        self.maybe_flush()

    def add_spectrum(self, step_id: int, points: Iterable[ev.SpectrumPoint]) -> None:
        """Buffer spectrum points; |Z| and phase are derived here, once, for the readers."""
        for p in points:
            z = complex(p.Z_re_ohm, p.Z_im_ohm)
            self._eis.append((step_id, _f(p.t_s), _f(p.frequency_Hz), _f(z.real), _f(z.imag),
                              _f(abs(z)), _f(math.degrees(cmath.phase(z))), _f(p.E_V),
                              _f(p.I_mA)))
        self.maybe_flush()

    def maybe_flush(self) -> None:
        """Flush if a second has passed since the last commit or the buffer is large."""
        if self._buffered() >= self.max_buffer_rows or (
            (self._points or self._chunks or self._eis)
            and time.monotonic() - self._last_flush >= self.flush_interval_s
        ):
            self.flush()

    def flush(self) -> None:
        """Commit every buffered point; when this returns, they are durable."""
        self._flush()

    def _flush(self, step_end: tuple[int, str, str | None, float] | None = None) -> None:
        if self._points or self._chunks or self._eis or step_end is not None:
            points = self._take_points()
            try:
                self._write(points, self._eis, step_end)
            except BaseException:
                self._points = points  # not acknowledged: still buffered, as before
                raise
            self.rows_written += len(points) + len(self._eis)
            self._eis = []
        self._last_flush = time.monotonic()

    @_db_write
    def _write(
        self, points: list[Sequence[Any]], eis: list[Sequence[Any]],
        step_end: tuple[int, str, str | None, float] | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            if points:
                self.writer.insert_points(conn, points)
            if eis:
                self.writer.insert_eis(conn, eis)
            if step_end is not None:
                step_id, status, end_reason, t_s = step_end
                self.writer.end_step(conn, step_id, dict(
                    status=status, end_reason=end_reason, t_end_s=t_s, ended_at=_now()))

    # ---- events and results --------------------------------------------------------------
    def event(
        self, run_id: int, kind: str, message: str, *, step_id: int | None = None,
        t_s: float | None = None, severity: str = "info", data: dict[str, Any] | None = None,
    ) -> None:
        """Record an event (committed at once)."""
        self._insert_event(run_id, str(kind), message, step_id, t_s, str(severity), data)

    @_db_write
    def _insert_event(
        self, run_id: int, kind: str, message: str, step_id: int | None, t_s: float | None,
        severity: str, data: dict[str, Any] | None,
    ) -> None:
        with self.engine.begin() as conn:
            self.writer.insert_event(conn, dict(
                run_id=run_id, step_id=step_id, at=_now(), t_s=t_s, kind=kind,
                severity=severity, message=message, data=data or {},
            ))

    @_db_write
    def store_results(
        self, run_id: int, analysis: str, version: str,
        results: Iterable[tuple[str, float | str | None, str, int | None]
                          | tuple[str, float | str | None, str, int | None, str | None]],
        only_step: int | None = None,
    ) -> None:
        """Replace `analysis`'s results: (name, value or text, unit, step_id[, flag_reason]).

        A fifth item that is not None flags the value as failing its quality check, stored
        with the reason. Normally every row of the analysis for the run is replaced; with
        `only_step`, only that step's rows are (a result computed as soon as one step ended).
        """
        rows = []
        for name, value, unit, step_id, *flag in results:
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            reason = flag[0] if flag else None
            rows.append(
                dict(
                    run_id=run_id, step_id=step_id, name=name,
                    value=_f(value) if numeric else None,  # type: ignore[arg-type]
                    text=None if numeric or value is None else str(value), unit=unit,
                    analysis=analysis, analysis_version=version, created_at=_now(),
                    flagged=reason is not None, flag_reason=reason,
                )
            )
        with self.engine.begin() as conn:
            stale = m.Result.__table__.delete().where(
                m.Result.run_id == run_id, m.Result.analysis == analysis
            )
            if only_step is not None:
                stale = stale.where(m.Result.step_id == only_step)
            conn.execute(stale)
            # one source per result: the same name (and step) from another analysis (the
            # engine's live CCD beside `labctl analyze`'s) is replaced as well
            by_step: dict[int | None, set[str]] = {}
            for row in rows:
                by_step.setdefault(row["step_id"], set()).add(row["name"])
            for step_id, names in by_step.items():
                same_step = (m.Result.step_id.is_(None) if step_id is None
                             else m.Result.step_id == step_id)
                conn.execute(m.Result.__table__.delete().where(
                    m.Result.run_id == run_id, same_step, m.Result.name.in_(sorted(names))))
            if rows:
                conn.execute(m.Result.__table__.insert(), rows)


class RecordingSink:
    """The recorder subscribed to the engine's events: each event becomes its rows.

    Holds the map from the engine's (run id, step number) to step row ids. Every write keeps
    the recorder's guarantees: points buffered and committed at least every `flush_interval_s`
    (on the engine's `Tick`s and as they arrive) and in the step end's own transaction;
    transient errors retried; a write that fails for good raises `RecordingError`, which the
    bus hands to the engine as its `SinkFailure`.
    """

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.failed = False  # a write failed for good: the journal takes the run's ending
        self._rows: dict[tuple[int, int], int] = {}
        rec = recorder
        self._handlers: dict[type, Callable[[Any], None]] = {
            ev.StepStarted: self._step_started,
            ev.StepEnded: lambda e: rec.end_step(self._rows[e.run_id, e.step], e.status.value,
                                                 e.end.text, e.t_s),
            ev.Points: lambda e: rec.add_points(self._rows[e.run_id, e.step], e.t_s, e.E_V,
                                                e.I_mA, e.Q_mAh, e.P_MPa),
            ev.SpectrumPoints: lambda e: rec.add_spectrum(self._rows[e.run_id, e.step],
                                                          e.points),
            ev.RunEnded: lambda e: rec.end_run(e.run_id, e.status.value, e.reason),
            ev.ResultsReady: self._results,
            ev.Tick: lambda e: rec.maybe_flush(),
            ev.OperatorActed: self._operator,
        }
        for notice in (ev.Notice, ev.LimitTripped, ev.DetectorTripped, ev.FaultOccurred,
                       ev.SafeStateAction):
            self._handlers[notice] = self._notice

    def __call__(self, event: ev.Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            try:
                handler(event)
            except Exception:
                self.failed = True
                raise

    def row_of(self, run_id: int, step: int) -> int:
        """The step row the engine's step number `step` of run `run_id` was recorded in."""
        return self._rows[run_id, step]

    def _step_started(self, e: ev.StepStarted) -> None:
        parent = None if e.parent is None else self._rows[e.run_id, e.parent]
        self._rows[e.run_id, e.step] = self.recorder.start_step(
            e.run_id, e.step, e.kind, e.name, dict(e.params), e.t_s, parent)

    def _notice(self, e: ev.Notice) -> None:
        step = None if e.step is None else self._rows.get((e.run_id, e.step))
        self.recorder.event(e.run_id, e.kind.value, e.message, step_id=step, t_s=e.t_s,
                            severity=e.severity.value, data=e.data or None)

    def _operator(self, e: ev.OperatorActed) -> None:
        self._notice(e)
        if e.action is ev.OperatorAction.PAUSE:
            self.recorder.set_run_status(e.run_id, ev.RunStatus.PAUSED.value)
        elif e.action is ev.OperatorAction.RESUME:
            self.recorder.set_run_status(e.run_id, ev.RunStatus.RUNNING.value)

    def _results(self, e: ev.ResultsReady) -> None:
        self.recorder.store_results(e.run_id, e.analysis, e.version, [
            (r.name, r.value, r.unit, None if r.step is None else self._rows[e.run_id, r.step])
            for r in e.results])
