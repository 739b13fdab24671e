"""Where the database is, how to connect to it, and how its schema is brought up to date.

Embedded SQLite by default (WAL journal, so readers never block the one writer), PostgreSQL for a
lab-wide database. The URL comes from `--db`, else `LABCTL_DB`, else the default SQLite file in
the user's data directory. The schema only ever changes through Alembic migrations.

Durability: SQLite runs with `synchronous=FULL`, so a commit is on the disk (the WAL fsynced)
before it is acknowledged and a power cut cannot roll it back (with `NORMAL` in WAL mode it
could: only checkpoints are fsynced). PostgreSQL's defaults (`fsync=on`,
`synchronous_commit=on`) already give that.

First use: several labctl processes may open a brand-new database at once (a campaign started
on several terminals). The schema is created by exactly one of them: the check-and-create runs
under a lock (an `flock` on `<db>.lock` next to an SQLite file, `pg_advisory_lock` on
PostgreSQL); the others wait, then find the schema there.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError

DB_ENV = "LABCTL_DB"
#: the databases labctl's schema and writers are made and tested for
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
#: pg_advisory_lock key of labctl's schema creation (any constant shared by every labctl)
SCHEMA_LOCK_KEY = int.from_bytes(b"labctlDB", "big") & 0x7FFF_FFFF_FFFF_FFFF

log = logging.getLogger(__name__)


class DatabaseError(RuntimeError):
    """The database cannot be used: bad URL, unreachable server, or an out-of-date schema."""


def default_sqlite_path() -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "labctl" / "labctl.db"


def resolve_url(cli_url: str | None = None) -> str:
    """`--db` wins, then LABCTL_DB, then the embedded SQLite file. A bare path means SQLite."""
    url = cli_url or os.environ.get(DB_ENV) or f"sqlite:///{default_sqlite_path()}"
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"invalid database URL {url!r}: {exc}") from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise DatabaseError(f"unsupported database {safe_url(url)}: labctl records to SQLite "
                            "(sqlite:///PATH or a bare path) or PostgreSQL (postgresql://...)")
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    # first, so that switching a brand-new file to WAL waits for another process's lock
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # every commit fsynced before it is acknowledged
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """An Engine for `url`, with SQLite tuned for one writer and concurrent readers."""
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError) as exc:
        raise DatabaseError(f"unsupported database URL {url!r}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        db_path = parsed.database
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def migrations_dir() -> Path:
    """The Alembic script directory: `alembic/` in a checkout, `labctl/_alembic` when installed."""
    checkout = Path(__file__).resolve().parents[2] / "alembic"
    if (checkout / "env.py").is_file():
        return checkout
    installed = Path(str(resources.files("labctl") / "_alembic"))
    if (installed / "env.py").is_file():
        return installed
    raise DatabaseError("labctl's migration scripts are missing from this installation")


def _alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at `url` to `revision` (creates it on an empty database)."""
    from alembic import command

    try:
        command.upgrade(_alembic_config(url), revision)
    except OperationalError as exc:
        raise DatabaseError(
            f"cannot reach database {safe_url(url)}: {_first_line(exc.orig)}"
        ) from None


def _declared_revisions() -> tuple[set[str], set[str]] | None:
    """(revision ids, ids named as a down_revision) declared in the migration scripts' text,
    or None if a script declares them in a form other than plain constants."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in sorted((migrations_dir() / "versions").glob("*.py")):
        found: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            target = (node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1
                      else node.target if isinstance(node, ast.AnnAssign) else None)
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                try:
                    found[target.id] = ast.literal_eval(node.value)  # type: ignore[arg-type]
                except ValueError:
                    return None
        rev, down = found.get("revision"), found.get("down_revision")
        if not isinstance(rev, str):
            return None
        revisions.add(rev)
        downs.update([down] if isinstance(down, str) else list(down or ()))  # type: ignore[arg-type]
    return revisions, downs


def head_revision() -> str:
    """The schema revision this labctl expects.

    Read from the migration scripts' declarations (ast, no import) when they form one chain
    with one head, which is the rule here: Alembic's ScriptDirectory imports alembic and every
    migration module, which was most of a read-only command's start-up. Anything else (several
    heads, computed ids) is left to Alembic. tests/cli/test_conventions.py checks both agree.
    """
    declared = _declared_revisions()
    if declared is not None:
        heads = declared[0] - declared[1]
        if len(heads) == 1:
            return heads.pop()
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at: the one row of Alembic's version table (a plain read;
    Alembic itself answers when the table holds several rows, i.e. branches)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        if len(rows) <= 1:
            return rows[0] if rows else None
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()


def _first_line(exc: BaseException) -> str:
    """Drivers put hints on further lines; an operator needs the first."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def open_database(cli_url: str | None = None) -> Engine:
    """Connect, check the schema is current; an empty database gets the schema created.

    A database that already holds an older schema is never migrated behind the operator's
    back: they get a clear error telling them to run `labctl db upgrade` (after a backup).
    """
    url = resolve_url(cli_url)
    engine = make_engine(url)
    try:
        with _schema_lock(engine):
            with engine.connect() as conn:
                tables = inspect(conn).get_table_names()
            if not tables:
                upgrade(url)
            elif current_revision(engine) != head_revision():
                raise DatabaseError(f"database {safe_url(url)} is not at the current schema; "
                                    "run: labctl db upgrade")
    except OperationalError as exc:
        raise DatabaseError(
            f"cannot reach database {safe_url(url)}: {_first_line(exc.orig)}"
        ) from None
    except SQLAlchemyDatabaseError as exc:  # e.g. SQLite's "file is not a database"
        raise DatabaseError(
            f"{safe_url(url)} is not a usable database: {_first_line(exc.orig)}"
        ) from None
    _replay_journals(engine, url)
    return engine


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """Held while the schema is checked and, on a brand-new database, created."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            yield
            return
        with open(f"{url.database}.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed
            yield
        return
    if url.get_backend_name() == "postgresql":
        with engine.connect() as conn:
            conn.execute(select(func.pg_advisory_lock(SCHEMA_LOCK_KEY)))
            try:
                yield
            finally:
                conn.execute(select(func.pg_advisory_unlock(SCHEMA_LOCK_KEY)))
                conn.commit()
        return
    yield


#: a journal file's suffix (labctl.recording.journal writes them)
JOURNAL_SUFFIX = ".jsonl"


def journal_dir(url: str) -> Path:
    """Where the local journals of the database at `url` live (see labctl.recording.journal):
    next to an SQLite file, else under the user's state directory, keyed by the URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db = Path(str(parsed.database))
        return db.with_name(db.name + ".journal")
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    key = hashlib.sha256(parsed.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return base / "labctl" / "journal" / key


def _replay_journals(engine: Engine, url: str) -> None:
    """Write the run endings an earlier labctl kept in its local journal (database failures);
    a failure here is logged, never a reason not to open the database.

    The journal module (it pulls in the recorder and the engine's events) is imported only when
    there is a journal: opening the database for `labctl runs` stays light.
    """
    directory = journal_dir(url)
    if not directory.is_dir() or not any(directory.glob(f"*{JOURNAL_SUFFIX}")):
        return
    from labctl.recording.journal import replay_journals

    try:
        written = replay_journals(engine, url)
    except Exception:
        log.warning("could not replay the local journals of %s", safe_url(url), exc_info=True)
        return
    if written:
        log.warning("wrote %d journaled entries (run endings the database missed) into %s",
                    written, safe_url(url))
