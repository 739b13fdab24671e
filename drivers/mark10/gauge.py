"""Mark-10 Series 4/5 force gauge over its ASCII serial protocol, GCL2.

The command table below is written to be read against the Series 5 user's guide, §9.8
"Command Set / Gauge Control Language 2 (GCL2)". Commands end in CR (an LF after it is ignored);
replies end in CR LF and print the value, a space and the unit, e.g. ``b'392.7 N\\r\\n'``
(compression positive, tension negative; the number of decimals follows the capacity).
Settings (units, modes, zero) answer nothing; an error answers ``*10`` illegal command,
``*11`` not applicable, ``*12`` invalid specifier or ``*22`` value too large.

The port is any `ByteTransport` (`labctl_drivers.mark10.transport`): a tty, a pyserial URL, a
VISA resource, or the in-process simulated gauge ``simgauge://NAME`` — so every simulated run
executes this driver on bytes.

Never a value from a stale line
-------------------------------
GCL2 replies carry no sequence number, so a reply that arrives late (a USB-serial adapter that
stalls, a gauge busy with its display) is indistinguishable from the next one: a driver that
times out on ``39`` and then reads ``2.7 N\\r\\n`` reports 2.7 N instead of 392.7 N. This driver
therefore keeps one invariant: **it reads a reply only while the line is in sync** — nothing
asked before the current command can still arrive. Any timeout or unparseable line, and any
unasked input found before a command, takes it out of sync, and the next command is preceded
by a resynchronisation:

1. send ``RM`` (read model, §9.8 "Personality") and discard every line until the model
   number comes back. The gauge answers in order over one serial line, so everything that was
   in flight before this probe — the late remainder of a split reply, a whole late reply, noise —
   has arrived before the model line and was discarded with it; a remainder can never be taken
   for a reading.
2. if earlier probes timed out, their answers are still to come (after a long stall they
   arrive in one burst): read on, discarding, until they are in, or until the line has been
   quiet for `quiet_s` (they were lost). A line that stops half-way then means a reply is still
   in flight, and the resynchronisation fails (to be retried).

The probe's expected answer is learned from the gauge itself (the first ``RM`` reply that looks
like a model number, confirmed by the probe round after it; `identify()` sets it too): the first
exchange after `open()` learns it. Resynchronisation only runs after a fault or on the first
exchange, and waits for nothing on a healthy line, so a healthy line costs one command per
reading — and no time at all on the in-process simulated gauge.

Failure policy: a garbled or missing reply (and a failed resynchronisation) is retried a
bounded number of times (tenacity), because single corrupted lines happen on long RS-232 runs;
a gauge error code (``*NN``: the gauge understood and refused) and a transport fault (the port is
gone) are not retried.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed, wait_none

from labctl_drivers import errors
from labctl_drivers.mark10.errors import GarbledReply, GaugeError, ReplyTimeout, UnitNotShown
from labctl_drivers.mark10.transport import ByteTransport, open_transport

__all__ = [
    "COMMANDS", "GAUGE_ERRORS", "LBF_N", "TO_NEWTON", "UNIT_COMMANDS", "GaugeIdentity",
    "Mark10Gauge", "Reading", "capacity_from_model", "parse_reading",
]

log = logging.getLogger(__name__)

# --- GCL2 command table (Series 5 user's guide §9.8) ------------------------------------------
COMMANDS: dict[str, str] = {
    # Request readings
    "reading": "?",  # displayed reading (depends on the primary-reading mode)
    "current_reading": "?C",  # real-time reading, whatever the display shows
    "peak_tension": "?PT",
    "peak_compression": "?PC",
    # Basic functions
    "mode_current": "CUR",  # primary reading: real time
    "mode_peak_tension": "PT",
    "mode_peak_compression": "PC",
    "clear_peaks": "CLR",
    "zero": "Z",  # zero the display and perform CLR
    # Personality
    "product_name": "RN",
    "model": "RM",
    "firmware": "RV",
    "serial_number": "RS",
    # Other
    "settings": "LIST",  # e.g. V1.00;LBF;CUR;FLTC8;FLTP1;AOUT00;AOFF5;FULL;MIT;POL;B0
}
#: Units: the name labctl uses -> the unit-select command.
UNIT_COMMANDS: dict[str, str] = {
    "N": "N",
    "kN": "KN",
    "mN": "MN",
    "lbF": "LB",
    "ozF": "OZ",
    "kgF": "KG",
    "gF": "G",
}
LBF_N = 4.4482216152605  # newtons per pound-force (exact: 0.45359237 kg x 9.80665 m/s²)
#: Newtons per displayed unit, by the unit as the gauge prints it, upper-cased ("LBF", "N").
TO_NEWTON: dict[str, float] = {
    "N": 1.0,
    "KN": 1000.0,
    "MN": 1e-3,
    "LBF": LBF_N,
    "LB": LBF_N,
    "OZF": LBF_N / 16.0,
    "OZ": LBF_N / 16.0,
    "KGF": 9.80665,
    "KG": 9.80665,
    "GF": 9.80665e-3,
    "G": 9.80665e-3,
}
GAUGE_ERRORS: dict[str, str] = {
    "*10": "illegal command",
    "*11": "not applicable",
    "*12": "invalid specifier",
    "*22": "value too large",
}
_PROBE = COMMANDS["model"]
_MAX_STALE_LINES = 64  # more unasked lines than this in one resync: the gauge is streaming

_READING = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*([A-Za-z]*)\s*$")
#: `_READING` on the reply's bytes, CR LF included. Whatever it matches, the text path
#: (decode, strip, `_READING`) matches too, with the same groups: it is the same pattern, the
#: bytes are ASCII, and bytes' `\s` is ASCII whitespace, which `str.strip` strips as well. So
#: `parse_reading` reads a well-formed reply without decoding it, and takes the text path (and
#: its errors) for anything else.
_READING_LINE = re.compile(rb"[ \t\n\r\f\v]*([+-]?(?:\d+\.?\d*|\.\d+))[ \t\n\r\f\v]*([A-Za-z]*)"
                           rb"[ \t\n\r\f\v]*\r\n")
_MODEL_CAPACITY = re.compile(r"\bM\d+-(\d+)\b")  # M5-200: capacity 200 lbF; M5-025: 0.25 lbF
_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")


@dataclass(frozen=True)
class Reading:
    """One reading as the gauge printed it."""

    value: float
    unit: str  # as printed ("N", "lbF", ...); "" when the gauge omits units

    @property
    def newtons(self) -> float:
        if not self.unit:
            raise UnitNotShown("the gauge prints no unit (serial data format without units); "
                               "its readings cannot be converted to newtons")
        return self.value * TO_NEWTON[self.unit.upper()]


def parse_reading(line: bytes) -> Reading:
    """Parse one reply line such as ``b'392.7 N\\r\\n'``; raise on anything else: a gauge error
    code raises `GaugeError`, anything that is not a number with a known unit `GarbledReply`.
    A line without its CR LF is a fragment and never a value.

    A well-formed reply is matched on its bytes (`_READING_LINE`); every other line goes
    through `parse_text_reply`, the reference, which says what is wrong with it."""
    if not line.endswith(b"\r\n"):
        raise GarbledReply(f"unterminated reply {line!r} (a fragment)")
    m = _READING_LINE.fullmatch(line)
    if m is not None:
        unit = m.group(2).decode("ascii")
        if not unit or unit.upper() in TO_NEWTON:
            return Reading(float(m.group(1)), unit)
    return parse_text_reply(line)


def parse_text_reply(line: bytes) -> Reading:
    """`parse_reading` on the decoded text: the reference parse, and its errors."""
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise GarbledReply(f"non-ASCII reply {line!r}") from exc
    if text in GAUGE_ERRORS:
        raise GaugeError(f"gauge error {text}: {GAUGE_ERRORS[text]}", text)
    m = _READING.match(text)
    if not m or (m.group(2) and m.group(2).upper() not in TO_NEWTON):
        raise GarbledReply(f"not a reading: {line!r}")
    return Reading(float(m.group(1)), m.group(2))


def capacity_from_model(model: str) -> float | None:
    """Full-scale capacity in newtons from a Mark-10 model number, None if it has none.

    Force gauge model numbers give the capacity in lbF after the series (M5-200: 200 lbF =
    889.6 N; M5-1000: 1000 lbF); a leading zero marks a fraction (M5-025: 0.25 lbF, M5-05:
    0.5 lbF), as in Mark-10's capacity tables.
    """
    m = _MODEL_CAPACITY.search(model.upper())
    if m is None:
        return None
    digits = m.group(1)
    lbf = float("0." + digits[1:]) if digits.startswith("0") else float(digits)
    return lbf * LBF_N if lbf > 0 else None


@dataclass(frozen=True)
class GaugeIdentity:
    """What the gauge says it is (``RM``, ``RS``, ``RV``)."""

    model: str
    serial_number: str
    firmware: str

    @property
    def capacity_N(self) -> float | None:
        return capacity_from_model(self.model)

    @property
    def simulated(self) -> bool:
        """Simulated gauges identify themselves: their serial numbers start with "SIM"."""
        return self.serial_number.upper().startswith("SIM")


class Mark10Gauge:
    """A Mark-10 force gauge on a serial port, a pyserial URL or a VISA resource."""

    def __init__(
        self,
        address: str,
        *,
        baudrate: int = 115200,
        timeout_s: float = 1.0,
        attempts: int = 3,
        retry_wait_s: float = 0.0,
        quiet_s: float = 0.05,
        visa_library: str | None = None,
        transport: ByteTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`baudrate` must match the gauge's menu setting (Series 5 default 115200, older
        9600). `timeout_s` bounds each reply; `attempts` bounds the tries of one request.
        `quiet_s` is how long the line must be silent before a resynchronisation ends: a few
        replies long (a reply takes ~1 ms at 115200 baud; USB-serial adapters batch bytes for
        up to 16 ms). `retry_wait_s` pauses between tries through `sleep` (none by default:
        the resynchronisation before a retry already waits for the line to settle).
        `visa_library` opens the address through pyvisa with that library (``@py``,
        ``path/to/mark10_sim.yaml@sim``); VISA resource strings use ``@py`` without it.
        `transport` hands in an open `ByteTransport` instead."""
        if timeout_s <= 0 or quiet_s <= 0:
            raise ValueError("timeout_s and quiet_s must be positive")
        self.address = address
        self.baudrate = baudrate
        self.timeout_s = float(timeout_s)
        self.attempts = max(1, int(attempts))
        self.retry_wait_s = float(retry_wait_s)
        self.quiet_s = float(quiet_s)
        self.visa_library = visa_library
        self._transport: ByteTransport | None = transport
        self._in_sync = False
        self._probe_reply: str | None = None  # the gauge's answer to RM, once learned
        self._probe_confirmed = False
        self._probes_out = 0  # probes sent whose answers have not been read
        self._identity: GaugeIdentity | None = None
        self._lock = threading.RLock()
        self._sleep = sleep
        self._retrying = Retrying(  # the tries after the first (see _retry)
            stop=stop_after_attempt(max(1, self.attempts - 1)),
            wait=wait_fixed(self.retry_wait_s) if self.retry_wait_s > 0 else wait_none(),
            sleep=sleep,
            retry=retry_if_exception_type((errors.GarbledReply, errors.ReplyTimeout)),
            reraise=True,
            before_sleep=self._log_retry,
        )
        self.resyncs = 0  # resynchronisations run (for tests and the station log)
        self.dropped_lines = 0  # stale lines discarded by them

    @property
    def url(self) -> str:
        """The address (kept under its old name: the driver used to speak pyserial only)."""
        return self.address

    @property
    def simulated(self) -> bool:
        """True when the far end is a simulated gauge: the transport says so (``simgauge://``,
        pyvisa-sim) or the gauge identified itself as one (serial number ``SIM...``)."""
        if self.address.lower().startswith("simgauge://"):
            return True
        if self._transport is not None and self._transport.simulated:
            return True
        return self._identity is not None and self._identity.simulated

    # -- connection -----------------------------------------------------------------------
    def open(self) -> None:
        """Open the port (no command is sent: the first request resynchronises and learns
        the gauge's answer to ``RM``)."""
        with self._lock:
            if self._transport is None:
                self._transport = open_transport(self.address, baudrate=self.baudrate,
                                                 timeout_s=self.timeout_s,
                                                 visa_library=self.visa_library)
                self._in_sync = False
                self._probes_out = 0

    def close(self) -> None:
        with self._lock:
            transport, self._transport = self._transport, None
            self._in_sync = False
            if transport is not None:
                transport.close()

    def __enter__(self) -> Mark10Gauge:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- exchanges ------------------------------------------------------------------------
    def _port(self) -> ByteTransport:
        if self._transport is None:
            self.open()
        assert self._transport is not None
        return self._transport

    @staticmethod
    def _log_retry(state: Any) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning("Mark-10 retry %d after: %s", state.attempt_number + 1, exc)

    def _exchange(self, command: str, *, then: str | None = None) -> bytes:
        """Send `command` (and `then` right after it, for a setting followed by a reading)
        and read one line. The line is in sync only once a reply has been read whole."""
        port = self._port()
        if self._in_sync and port.drop_input():
            log.warning("Mark-10 at %s: unasked input before %r", self.address, command)
            self._in_sync = False  # a DATA key press, noise: what else is still coming?
        if not self._in_sync:
            self._resync()
        self._in_sync = False
        data = command.encode("ascii") + b"\r"
        if then is not None:
            data += then.encode("ascii") + b"\r"
        port.write(data)
        line = port.read_line(self.timeout_s)
        self._in_sync = True
        return line

    def _resync(self) -> None:
        """Bring the line back in sync (module docstring): probe with ``RM``, discard up to
        its answer, then read on until the answers to earlier probes that timed out are in
        too. Raises `ReplyTimeout`/`GarbledReply` (the line stays out of sync) when the gauge
        does not answer within the timeout or does not settle."""
        port = self._port()
        self.resyncs += 1
        port.drop_input()
        if self._probe_reply is None:
            self._learn_probe(port)
        assert self._probe_reply is not None
        port.write(_PROBE.encode("ascii") + b"\r")
        self._probes_out += 1
        matched = mid_line = False
        for _ in range(_MAX_STALE_LINES):
            try:
                line = port.read_line(self.quiet_s if matched else self.timeout_s)
            except errors.ReplyTimeout as exc:
                if not matched:
                    if not self._probe_confirmed:
                        self._probe_reply = None  # perhaps learned from a stale line
                    raise
                if getattr(exc, "partial", b""):
                    mid_line = True  # the rest of that line is still on its way
                    continue
                if mid_line:
                    raise ReplyTimeout(f"Mark-10 at {self.address}: the line does not settle "
                                       "(a reply stopped half-way)") from exc
                self._probes_out = 0  # quiet for quiet_s: the missing answers were lost
                break
            mid_line = False
            if line.decode("ascii", "replace").strip() == self._probe_reply:
                matched = True
                self._probes_out -= 1
                if self._probes_out <= 0:  # ours, and no earlier probe is still out
                    self._probes_out = 0
                    break
            else:
                self.dropped_lines += 1
                log.debug("Mark-10 at %s: dropped stale line %r", self.address, line)
        else:
            raise GarbledReply(f"Mark-10 at {self.address} keeps sending lines nobody asked "
                               "for: is its automatic output on?")
        self._probe_confirmed = True
        self._in_sync = True

    def _learn_probe(self, port: ByteTransport) -> None:
        """Learn the gauge's answer to RM. It is taken only if it looks like a model number
        (printable, not a reading, not an error code) and is confirmed by the probe round
        that follows (a stale line taken for it would never come back: the round times out
        and the answer is learned again)."""
        port.write(_PROBE.encode("ascii") + b"\r")
        self._probes_out += 1
        text = port.read_line(self.timeout_s).decode("ascii", "replace").strip()
        self._probes_out -= 1
        if not _PRINTABLE.match(text) or text in GAUGE_ERRORS or _READING.match(text):
            raise GarbledReply(f"Mark-10 at {self.address}: {text!r} is not a model number "
                               "(answer to RM)")
        self._probe_reply = text
        self._probe_confirmed = False

    def _retry(self, once: Callable[[], Any]) -> Any:
        """`once()`, retried on garbled/missing replies up to `attempts` tries in all. The
        first try runs outside tenacity: a healthy reading then costs no retry bookkeeping
        (about half of an in-process reading's time otherwise)."""
        with self._lock:
            try:
                return once()
            except (errors.GarbledReply, errors.ReplyTimeout) as exc:
                if self.attempts == 1:
                    raise
                log.warning("Mark-10 retry 1 after: %s", exc)
            if self.retry_wait_s > 0:
                self._sleep(self.retry_wait_s)
            return self._retrying(once)

    def query_reading(self, command: str = COMMANDS["reading"]) -> Reading:
        """Send a reading command and parse its reply, with bounded retries."""

        def once() -> Reading:
            line = self._exchange(command)
            try:
                return parse_reading(line)
            except errors.GarbledReply:
                self._in_sync = False
                raise

        result: Reading = self._retry(once)
        return result

    def query_text(self, command: str) -> str:
        """Send a command whose reply is free text (model, serial number, settings list)."""

        def once() -> str:
            line = self._exchange(command)
            text = line.decode("ascii", "replace").strip()
            if text in GAUGE_ERRORS:
                raise GaugeError(f"gauge error {text} for {command!r}: {GAUGE_ERRORS[text]}",
                                 text)
            if not _PRINTABLE.match(text):
                self._in_sync = False
                raise GarbledReply(f"reply to {command!r} is not text: {line!r}")
            return text

        result: str = self._retry(once)
        return result

    def command(self, command: str) -> Reading:
        """Send a setting (which answers nothing) followed by a reading request, so that a
        ``*NN`` for the setting comes back in place of the reading and cannot go unnoticed.
        Returns the reading taken after the setting. Settings are idempotent, so a lost reply
        retries the pair."""

        def once() -> Reading:
            line = self._exchange(command, then=COMMANDS["reading"])
            try:
                return parse_reading(line)
            except GaugeError:
                self._in_sync = False  # the reading's own reply is still coming
                raise
            except errors.GarbledReply:
                self._in_sync = False
                raise

        result: Reading = self._retry(once)
        return result

    # -- public API -----------------------------------------------------------------------
    def read(self) -> Reading:
        """The displayed reading, in the gauge's current unit."""
        return self.query_reading(COMMANDS["reading"])

    def read_current(self) -> Reading:
        """The real-time reading (``?C``), in the gauge's current unit."""
        return self.query_reading(COMMANDS["current_reading"])

    def read_force_N(self) -> float:
        """Real-time force in newtons (compression positive)."""
        return self.read_current().newtons

    def peaks_N(self) -> tuple[float, float]:
        """(peak tension, peak compression) in newtons since the last clear/zero."""
        return (
            self.query_reading(COMMANDS["peak_tension"]).newtons,
            self.query_reading(COMMANDS["peak_compression"]).newtons,
        )

    def units(self) -> str:
        """The unit the gauge is printing now."""
        return self.read().unit

    def set_units(self, unit: str) -> None:
        """Select the display unit ("N", "kN", "mN", "lbF", "ozF", "kgF", "gF")."""
        if unit not in UNIT_COMMANDS:
            raise ValueError(f"unit must be one of {sorted(UNIT_COMMANDS)}")
        got = self.command(UNIT_COMMANDS[unit]).unit
        if got.upper() != unit.upper():
            raise errors.InstrumentError(f"Mark-10 unit is {got!r} after selecting {unit!r}")

    def zero(self) -> float:
        """Tare: zero the reading (do it with the frame unloaded). Returns the reading after."""
        return self.command(COMMANDS["zero"]).newtons

    tare = zero

    def clear_peaks(self) -> None:
        self.command(COMMANDS["clear_peaks"])

    def identify(self) -> str:
        """The model number (``RM``), e.g. "M5-200"."""
        return self.identity().model

    def identity(self) -> GaugeIdentity:
        """Model, serial number and firmware (``RM``, ``RS``, ``RV``), asked anew each call."""
        with self._lock:
            model = self.query_text(COMMANDS["model"])
            self._probe_reply, self._probe_confirmed = model, True
            ident = GaugeIdentity(model, self.query_text(COMMANDS["serial_number"]),
                                  self.query_text(COMMANDS["firmware"]))
            self._identity = ident
            return ident

    def settings(self) -> list[str]:
        """The fields of ``LIST`` (firmware, unit, mode, filters, ..., battery)."""
        return self.query_text(COMMANDS["settings"]).split(";")
