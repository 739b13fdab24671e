"""The database schema as SQLAlchemy 2 typed ORM models.

The schema is created and changed only through Alembic migrations (alembic/versions); a test
fails if these models and the migrations disagree. Units are in the column names so that a
person querying the database with plain SQL cannot misread them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, dt.datetime: DateTime(timezone=True)}


class Instrument(Base):
    """A physical (or simulated) instrument a run used: potentiostat, pressure frame, tester."""

    __tablename__ = "instrument"
    __table_args__ = (UniqueConstraint("name", "simulated", name="uq_instrument_name_sim"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))  # potentiostat | pressure_frame | tester
    model: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(200))
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Cell(Base):
    """The sample. `name` is the operator's cell id; the full description is kept as JSON too."""

    __tablename__ = "cell"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    anode_material: Mapped[str] = mapped_column(String(20))  # Na | NaK
    k_wt_pct: Mapped[float | None] = mapped_column(Float)
    alloy_mass_mg: Mapped[float | None] = mapped_column(Float)
    counter_electrode: Mapped[str] = mapped_column(String(40))
    electrolyte: Mapped[str] = mapped_column(String(200))
    coating: Mapped[str | None] = mapped_column(String(200))
    area_cm2: Mapped[float] = mapped_column(Float)
    diameter_mm: Mapped[float | None] = mapped_column(Float)
    temperature_C: Mapped[float | None] = mapped_column(Float)
    notes: Mapped[str | None] = mapped_column(Text)
    description: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Protocol(Base):
    """A protocol exactly as the operator wrote it; identical texts share one row (sha256)."""

    __tablename__ = "protocol"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    schema_version: Mapped[int] = mapped_column(Integer)
    yaml_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Run(Base):
    """One execution of a protocol on one cell on one channel.

    `status`: running | completed | failed | aborted | interrupted. `control` carries an
    operator request (pause | resume | abort) from another process to the engine. Whether a
    'running' run is really live is its `RunLease`'s business, not `heartbeat_at`'s (the
    holder's own wall clock at its last renewal, kept for people reading the table).
    """

    __tablename__ = "run"
    __table_args__ = (Index("ix_run_status", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cell_id: Mapped[int] = mapped_column(ForeignKey("cell.id"))
    protocol_id: Mapped[int] = mapped_column(ForeignKey("protocol.id"))
    potentiostat_id: Mapped[int | None] = mapped_column(ForeignKey("instrument.id"))
    channel: Mapped[int | None] = mapped_column(Integer)
    station: Mapped[str] = mapped_column(String(200))
    simulated: Mapped[bool] = mapped_column(Boolean)
    operator: Mapped[str | None] = mapped_column(String(200))
    seed: Mapped[int | None] = mapped_column(Integer)
    labctl_version: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column()
    pid: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="running")
    end_reason: Mapped[str | None] = mapped_column(Text)
    control: Mapped[str | None] = mapped_column(String(20))

    cell: Mapped[Cell] = relationship()
    protocol: Mapped[Protocol] = relationship()
    steps: Mapped[list[Step]] = relationship(back_populates="run", order_by="Step.index")


class Step(Base):
    """One step as executed, with its resolved parameters; ramps record each stage as a child."""

    __tablename__ = "step"
    __table_args__ = (UniqueConstraint("run_id", "index", name="uq_step_run_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("step.id"))
    index: Mapped[int] = mapped_column(Integer)  # execution order within the run
    kind: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    t_start_s: Mapped[float] = mapped_column(Float)  # run time (instrument clock)
    t_end_s: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default="running")
    end_reason: Mapped[str | None] = mapped_column(Text)

    run: Mapped[Run] = relationship(back_populates="steps")


class Point(Base):
    """Time series, one row per sample: `t_s` is run time, `Q_mAh` charge within the step."""

    __tablename__ = "point"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("step.id", ondelete="CASCADE"), index=True)
    t_s: Mapped[float] = mapped_column(Float)
    E_V: Mapped[float] = mapped_column(Float)
    I_mA: Mapped[float] = mapped_column(Float)
    Q_mAh: Mapped[float] = mapped_column(Float)
    P_MPa: Mapped[float | None] = mapped_column(Float)


class EisPoint(Base):
    """One frequency of a spectrum; Z_im_ohm is the imaginary part (negative = capacitive)."""

    __tablename__ = "eis_point"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("step.id", ondelete="CASCADE"), index=True)
    t_s: Mapped[float] = mapped_column(Float)
    frequency_Hz: Mapped[float] = mapped_column(Float)
    Z_re_ohm: Mapped[float] = mapped_column(Float)
    Z_im_ohm: Mapped[float] = mapped_column(Float)
    Z_mod_ohm: Mapped[float] = mapped_column(Float)
    phase_deg: Mapped[float] = mapped_column(Float)
    E_V: Mapped[float | None] = mapped_column(Float)
    I_mA: Mapped[float | None] = mapped_column(Float)


class Event(Base):
    """Anything besides data: limit and detector trips, faults, operator actions, notes."""

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[int | None] = mapped_column(ForeignKey("step.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    t_s: Mapped[float | None] = mapped_column(Float)
    # limit | detector | fault | operator | note | safe_state
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(20), default="info")
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Result(Base):
    """A named analysis value with its unit, for a run or one of its steps."""

    __tablename__ = "result"
    __table_args__ = (Index("ix_result_run_name", "run_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    step_id: Mapped[int | None] = mapped_column(ForeignKey("step.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(Float)
    text: Mapped[str | None] = mapped_column(Text)  # for non-numeric results, e.g. failure mode
    unit: Mapped[str] = mapped_column(String(40), default="")
    analysis: Mapped[str] = mapped_column(String(100))
    analysis_version: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # the value failed its quality check (e.g. a fit parameter the data do not determine):
    # stored with the reason, never a headline or notification value
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    flag_reason: Mapped[str | None] = mapped_column(Text)


# ---- ownership (leases) ------------------------------------------------------------------------
# Times here are seconds since the epoch on the DATABASE's clock (`labctl.recording.leases`), never
# on a client's: a host whose clock runs fast or a process stopped for minutes cannot make a lease
# look older or younger than it is. `pid_started_s` is the holder's process start time as its own
# host reports it: with `host` and `pid` it names one process (a reused pid is another process).


class RunLease(Base):
    """Which process holds a run: it writes the run and renews this lease while it runs it."""

    __tablename__ = "run_lease"

    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"),
                                        primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    pid_started_s: Mapped[float] = mapped_column(Float)
    acquired_db_s: Mapped[float] = mapped_column(Float)
    renewed_db_s: Mapped[float] = mapped_column(Float)
    expires_db_s: Mapped[float] = mapped_column(Float)
    released_db_s: Mapped[float | None] = mapped_column(Float)  # set when the run ended


class ChannelLease(Base):
    """A channel in use: one row per (station, instrument, channel) while a labctl holds it."""

    __tablename__ = "channel_lease"

    station: Mapped[str] = mapped_column(String(200), primary_key=True)
    instrument: Mapped[str] = mapped_column(String(200), primary_key=True)
    channel: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    pid_started_s: Mapped[float] = mapped_column(Float)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"))
    acquired_db_s: Mapped[float] = mapped_column(Float)
    renewed_db_s: Mapped[float] = mapped_column(Float)
    expires_db_s: Mapped[float] = mapped_column(Float)
