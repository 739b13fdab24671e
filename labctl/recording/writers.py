"""How the recorder's rows reach the tables: a plain reference writer and the fast ones beside it.

The `Recorder` decides *when* rows are written and in which transaction (buffering, the commit at
least every second and in a step end's own transaction, retries, `RecordingError`). A `Writer`
only decides *how* the rows of one transaction are put into the tables, on the connection the
recorder hands it; it never begins, commits or retries anything.

* `ReferenceWriter`: plain SQLAlchemy Core, `insert(table)` with lists of dicts and
  `update(table)`, the same code on every backend. It is the readable statement of what the
  recorder stores, and it ships: `Recorder(engine, writer="reference")` records through it, e.g.
  to rule the fast paths out when a recording looks wrong.
* `SQLiteWriter`: the same rows through `exec_driver_sql` with statements built once and plain
  tuples (`executemany` for points and spectra). Core's compile-and-process path costs several
  times more per row, and points arrive by the million.
* `PostgresCopyWriter`: points and spectra by `COPY ... FROM STDIN` (psycopg 3), the fastest
  bulk path PostgreSQL has; step and event rows as the reference writes them (one row each, and
  `RETURNING` is native there).

`make_writer(engine, "fast")`, the recorder's default, picks the fast writer for the engine's
backend. A fast writer must store exactly what the reference stores: tests/recording/
test_writers.py records the same run through both and compares every column of every table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from sqlalchemy import Connection, Dialect, Engine, Table, insert, update

from labctl.recording import models as m

POINT_COLUMNS = ("step_id", "t_s", "E_V", "I_mA", "Q_mAh", "P_MPa")
EIS_COLUMNS = (
    "step_id", "t_s", "frequency_Hz", "Z_re_ohm", "Z_im_ohm", "Z_mod_ohm", "phase_deg", "E_V",
    "I_mA",
)
# the keys of the rows the recorder hands to `insert_step`, `end_step` and `insert_event`
STEP_COLUMNS = ("run_id", "parent_id", "index", "kind", "name", "params", "started_at",
                "t_start_s", "status")
STEP_END_COLUMNS = ("status", "end_reason", "t_end_s", "ended_at")
EVENT_COLUMNS = ("run_id", "step_id", "at", "t_s", "kind", "severity", "message", "data")

WriterName = Literal["fast", "reference"]
WRITER_NAMES: tuple[WriterName, ...] = ("fast", "reference")

_STEP: Table = m.Step.__table__  # type: ignore[assignment]
_EVENT: Table = m.Event.__table__  # type: ignore[assignment]
_POINT: Table = m.Point.__table__  # type: ignore[assignment]
_EIS: Table = m.EisPoint.__table__  # type: ignore[assignment]


class Writer(Protocol):
    """Puts rows into the tables on a connection inside the recorder's transaction.

    Point and spectrum rows are tuples in `POINT_COLUMNS` / `EIS_COLUMNS` order holding Python
    floats, ints or None (what `ndarray.tolist()` gives); step and event rows are mappings keyed
    by `STEP_COLUMNS` / `STEP_END_COLUMNS` / `EVENT_COLUMNS`, values as the models take them.
    """

    name: str

    def insert_step(self, conn: Connection, row: Mapping[str, Any]) -> int:
        """Insert one step row; return its id."""
        ...

    def end_step(self, conn: Connection, step_id: int, values: Mapping[str, Any]) -> None:
        """Close step `step_id` with its `STEP_END_COLUMNS` values."""
        ...

    def insert_event(self, conn: Connection, row: Mapping[str, Any]) -> None:
        """Insert one event row."""
        ...

    def insert_points(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Insert point rows, in order (their ids follow it)."""
        ...

    def insert_eis(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Insert spectrum rows, in order."""
        ...


class ReferenceWriter:
    """Plain SQLAlchemy Core: the definition of what the recorder stores, on any backend."""

    name = "reference"

    def insert_step(self, conn: Connection, row: Mapping[str, Any]) -> int:
        return int(conn.execute(insert(_STEP), dict(row)).inserted_primary_key[0])

    def end_step(self, conn: Connection, step_id: int, values: Mapping[str, Any]) -> None:
        conn.execute(update(_STEP).where(_STEP.c.id == step_id).values(**values))

    def insert_event(self, conn: Connection, row: Mapping[str, Any]) -> None:
        conn.execute(insert(_EVENT), dict(row))

    def insert_points(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        conn.execute(insert(_POINT), [dict(zip(POINT_COLUMNS, r)) for r in rows])

    def insert_eis(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        conn.execute(insert(_EIS), [dict(zip(EIS_COLUMNS, r)) for r in rows])


def _quoted(dialect: Dialect, columns: Sequence[str]) -> list[str]:
    """Column names as the dialect spells them in SQL (mixed case and `index` need quotes)."""
    return [dialect.identifier_preparer.quote(c) for c in columns]


class SQLiteWriter:
    """SQLite by `exec_driver_sql`: statements built once, rows as tuples.

    Step and event values go through their columns' own bind processors (JSON text, datetime
    text, floats), so the stored bytes are what Core would store; those rows come one at a time
    and the processors cost little beside the ~60 µs of the statement (Core's: ~250 µs).
    Point and spectrum rows skip the processors: a million rows times six calls would cost
    about a fifth of the write, and their values are already Python floats, ints and None,
    which sqlite3 binds exactly as Core's float conversion would (ints become REAL by the
    columns' affinity, NaN becomes NULL either way).
    """

    name = "sqlite"

    def __init__(self, dialect: Dialect) -> None:
        def processors(table: Table, columns: Sequence[str]) -> list[Callable[[Any], Any]]:
            found = []
            for c in columns:
                proc = table.c[c].type.dialect_impl(dialect).bind_processor(dialect)
                found.append(proc if proc is not None else _same)
            return found

        def insert_sql(table: Table, columns: Sequence[str]) -> str:
            names = ", ".join(_quoted(dialect, columns))
            return f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})"

        self._step_procs = processors(_STEP, STEP_COLUMNS)
        self._step_end_procs = processors(_STEP, STEP_END_COLUMNS)
        self._event_procs = processors(_EVENT, EVENT_COLUMNS)
        self._step_sql = insert_sql(_STEP, STEP_COLUMNS)
        self._event_sql = insert_sql(_EVENT, EVENT_COLUMNS)
        self._point_sql = insert_sql(_POINT, POINT_COLUMNS)
        self._eis_sql = insert_sql(_EIS, EIS_COLUMNS)
        sets = ", ".join(f"{c} = ?" for c in _quoted(dialect, STEP_END_COLUMNS))
        self._step_end_sql = f"UPDATE {_STEP.name} SET {sets} WHERE id = ?"

    def insert_step(self, conn: Connection, row: Mapping[str, Any]) -> int:
        params = tuple(p(row[c]) for c, p in zip(STEP_COLUMNS, self._step_procs))
        return int(conn.exec_driver_sql(self._step_sql, params).lastrowid)

    def end_step(self, conn: Connection, step_id: int, values: Mapping[str, Any]) -> None:
        params = (*(p(values[c]) for c, p in zip(STEP_END_COLUMNS, self._step_end_procs)),
                  step_id)
        conn.exec_driver_sql(self._step_end_sql, params)

    def insert_event(self, conn: Connection, row: Mapping[str, Any]) -> None:
        params = tuple(p(row[c]) for c, p in zip(EVENT_COLUMNS, self._event_procs))
        conn.exec_driver_sql(self._event_sql, params)

    def insert_points(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        conn.exec_driver_sql(self._point_sql, rows)  # type: ignore[arg-type]

    def insert_eis(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        conn.exec_driver_sql(self._eis_sql, rows)  # type: ignore[arg-type]


def _same(value: Any) -> Any:
    return value


class PostgresCopyWriter(ReferenceWriter):
    """PostgreSQL: points and spectra by COPY (psycopg 3's `write_row`), the rest by Core.

    COPY's text format carries floats as psycopg writes them (shortest repr, exact), None as
    NULL and NaN as NaN, as a Core insert binds them.
    """

    name = "postgres-copy"

    def __init__(self, dialect: Dialect) -> None:
        def copy_sql(table: Table, columns: Sequence[str]) -> str:
            return f"COPY {table.name} ({', '.join(_quoted(dialect, columns))}) FROM STDIN"

        self._point_copy = copy_sql(_POINT, POINT_COLUMNS)
        self._eis_copy = copy_sql(_EIS, EIS_COLUMNS)

    def insert_points(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        self._copy(conn, self._point_copy, rows)

    def insert_eis(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        self._copy(conn, self._eis_copy, rows)

    @staticmethod
    def _copy(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        with dbapi.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[attr-defined]
            for row in rows:
                copy.write_row(row)


def make_writer(engine: Engine, writer: WriterName | Writer = "fast") -> Writer:
    """The writer named `writer` for `engine`'s backend, or `writer` itself if it is one.

    "fast" falls back to the reference on a backend (or PostgreSQL driver) it has no fast path
    for, so it is always a correct choice.
    """
    if not isinstance(writer, str):
        return writer
    if writer not in WRITER_NAMES:
        raise ValueError(f"unknown writer {writer!r}; choose one of {', '.join(WRITER_NAMES)}")
    dialect = engine.dialect
    if writer == "fast" and dialect.name == "sqlite":
        return SQLiteWriter(dialect)
    if writer == "fast" and dialect.name == "postgresql" and dialect.driver == "psycopg":
        return PostgresCopyWriter(dialect)
    return ReferenceWriter()
