"""Station files: which instruments a bench has, how labctl reaches them, which channel each cell
uses. Every run runs on a station; `--sim` picks the built-in simulated station
(`labctl/stations/builtin/sim.yaml`), which is written in this same schema.

    name: glovebox-1
    poll_interval_s: 1.0                # how often the engine drains each channel
    potentiostats:
      - name: sp300-a
        driver: biologic-sp300          # found by name among installed drivers (entry points)
        address: USB0                   # or the SP-300's IP address
        # backend: easy-biologic (default, BioLogic's EClib DLL on Windows) | simulated
        #          | tcp://HOST:PORT (a simulated bench served by `labctl sim serve`)
    frames:
      - name: frame-1
        gauge: {driver: mark10, port: /dev/ttyUSB0, baudrate: 115200}   # or ASRL...::INSTR
        electrode_diameter_mm: 6        # optional: the cell's own area when not given
        force_band_N: [0, 900]          # a first reading outside it stops the station
    channels:                           # cells given with --cell take these in order
      - {potentiostat: sp300-a, channel: 0, frame: frame-1}
      - {potentiostat: sp300-a, channel: 1}

A LANDT tester is followed, not driven (LAND publishes no control protocol): a station names its
testers and channels and where each channel's exports appear (docs/landt.md):

    landt:
      testers:
        - {name: land-1, model: CT3002A, exports: 'D:/LAND/export'}   # or backend: simulated
      channels:                         # a station without potentiostats runs cells on these
        - {tester: land-1, channel: '1-3', export: 'cell-42*.csv', skip: [eis, pressure]}

labctl never guesses instrument addresses. Errors are located (FILE:LINE:COL) like protocol
errors, and a station file is checked completely before anything is connected.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from labctl.protocol.errors import LocatedError, ProtocolError, did_you_mean
from labctl.protocol.instrument import SP300, InstrumentRanges
from labctl.protocol.loader import read_text_file
from labctl.protocol.yaml_source import YamlSyntax, load_yaml, to_plain

_NAME = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class ClockKind(enum.Enum):
    """Whose time the station runs on."""

    WALL = "wall"  # real instruments, or a simulated bench in its own process
    VIRTUAL = "virtual"  # the in-process simulated bench: time jumps to the next wake-up


class Backend(enum.Enum):
    """How labctl reaches a potentiostat's lowest layer (everything above it is the same)."""

    VENDOR = "vendor"  # the vendor's library on the real instrument (easy-biologic + EClib DLL)
    SIMULATED = "simulated"  # the in-process simulated bench on the station's clock
    REMOTE = "remote"  # a simulated bench in its own process, reached over TCP


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClockEntry(_Entry):
    kind: ClockKind = ClockKind.WALL
    speed: float = Field(default=1.0, gt=0, le=10_000, description=(
        "wall-clock acceleration shared with a simulated bench in its own process"))

    @model_validator(mode="after")
    def _speed_only_on_wall(self) -> ClockEntry:
        if self.kind is ClockKind.VIRTUAL and self.speed != 1.0:
            raise ValueError("speed applies to a wall clock only")
        return self


class SimulationEntry(_Entry):
    """The in-process simulated bench: its seed (runs are reproducible for a seed)."""

    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class RangesEntry(_Entry):
    """A potentiostat's own ranges when they are narrower than the SP-300's (another board or
    model): protocols for this station are checked against them."""

    E_max_V: float = Field(default=SP300.E_abs_max_V, gt=0, le=SP300.E_abs_max_V,
                           allow_inf_nan=False)
    I_max_mA: float = Field(default=SP300.I_abs_max_mA, gt=0, le=SP300.I_abs_max_mA,
                            allow_inf_nan=False)
    f_min_Hz: float = Field(default=SP300.f_min_Hz, ge=SP300.f_min_Hz, allow_inf_nan=False)
    f_max_Hz: float = Field(default=SP300.f_max_Hz, le=SP300.f_max_Hz, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> RangesEntry:
        if self.f_min_Hz >= self.f_max_Hz:
            raise ValueError("f_min_Hz must be below f_max_Hz")
        return self


class PotentiostatEntry(_Entry):
    name: str = _NAME
    driver: str = Field(min_length=1, max_length=64)
    address: str = Field(default="USB0", min_length=1, max_length=256)
    backend: str = Field(default="vendor", max_length=256, description=(
        "vendor | simulated | tcp://HOST:PORT"))
    timeout_s: int = Field(default=5, gt=0, le=120)
    ranges: RangesEntry | None = None

    @property
    def instrument_ranges(self) -> InstrumentRanges:
        """This potentiostat's ranges: its own `ranges:`, else the SP-300's."""
        if self.ranges is None:
            return SP300
        r = self.ranges
        return InstrumentRanges(self.name, r.E_max_V, r.I_max_mA, r.f_min_Hz, r.f_max_Hz)

    @property
    def backend_kind(self) -> Backend:
        if self.backend.startswith("tcp://"):
            return Backend.REMOTE
        return Backend(self.backend)

    @model_validator(mode="after")
    def _known_backend(self) -> PotentiostatEntry:
        if not self.backend.startswith("tcp://") and self.backend not in {
                b.value for b in Backend if b is not Backend.REMOTE}:
            raise ValueError(f"backend must be vendor, simulated or tcp://HOST:PORT, "
                             f"not {self.backend!r}")
        return self


class GaugeEntry(_Entry):
    driver: str = Field(min_length=1, max_length=64)
    port: str = Field(min_length=1, max_length=256, description=(
        "a device path, a pyserial URL (socket://host:port, simgauge://NAME) or a VISA "
        "resource (ASRL/dev/ttyUSB0::INSTR)"))
    baudrate: int = Field(default=115200, gt=0, le=1_000_000)
    timeout_s: float = Field(default=1.0, gt=0, le=60)


class Actuator(enum.Enum):
    """Who turns a spring frame's screw."""

    OPERATOR = "operator"  # a person, told the force to set; labctl waits for the gauge
    SIMULATED_OPERATOR = "simulated-operator"  # the in-process simulated bench's operator
    REMOTE_OPERATOR = "remote"  # the operator of a simulated bench in its own process


class FrameEntry(_Entry):
    name: str = _NAME
    gauge: GaugeEntry
    electrode_diameter_mm: float | None = Field(default=None, gt=0, le=100)
    area_mm2: float | None = Field(default=None, gt=0, le=10_000)
    force_band_N: tuple[float, float] | None = None
    actuator: str = Field(default="operator", max_length=256, description=(
        "operator | simulated-operator | tcp://HOST:PORT (a bench in its own process)"))

    @property
    def actuator_kind(self) -> Actuator:
        if self.actuator.startswith("tcp://"):
            return Actuator.REMOTE_OPERATOR
        return Actuator(self.actuator)

    @model_validator(mode="after")
    def _checks(self) -> FrameEntry:
        if self.electrode_diameter_mm is not None and self.area_mm2 is not None:
            raise ValueError("give at most one of electrode_diameter_mm or area_mm2")
        if self.force_band_N is not None and not 0 <= self.force_band_N[0] < self.force_band_N[1]:
            raise ValueError("force_band_N must be [low, high] with 0 <= low < high")
        if not self.actuator.startswith("tcp://") and self.actuator not in {
                Actuator.OPERATOR.value, Actuator.SIMULATED_OPERATOR.value}:
            raise ValueError("actuator must be operator, simulated-operator or tcp://HOST:PORT, "
                             f"not {self.actuator!r}")
        return self


class ChannelEntry(_Entry):
    potentiostat: str
    channel: int = Field(ge=0, le=15)
    frame: str | None = None


# ---- LANDT testers (followed through their exports; docs/landt.md) -----------------------------
class LandtBackend(enum.Enum):
    """Who writes a LANDT tester's exports."""

    FILES = "files"  # LAND's own software (LANDdt), into the tester's export folder
    SIMULATED = "simulated"  # the simulated LAND tester (labctl_drivers.sim.landt)


class LandtSkip(enum.Enum):
    """Protocol step kinds a LANDT channel may leave out (a LAND tester cannot run them)."""

    EIS = "eis"  # the impedance is measured on another instrument
    PRESSURE = "pressure"  # the frame is set by hand before LAND is started


class LandtTesterEntry(_Entry):
    name: str = _NAME
    model: str = Field(default="LAND", min_length=1, max_length=64, description=(
        "the tester's model as the record should name it, e.g. CT2001A, CT3002A"))
    exports: str = Field(min_length=1, max_length=1024, description=(
        "the folder LANDdt exports this tester's record tables into"))
    backend: LandtBackend = LandtBackend.FILES
    settle_s: float = Field(default=30.0, gt=0, le=3600, description=(
        "how long an export's last line without a line end must stay unchanged to be read"))
    stale_after_s: float = Field(default=600.0, gt=0, le=86400, description=(
        "an export that has not grown this long means LAND stopped"))


class LandtChannelEntry(_Entry):
    tester: str
    channel: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
                         description="LAND's name of the channel, e.g. 3 or 1-3 (box-channel)")
    export: str = Field(min_length=1, max_length=256, description=(
        "glob of this channel's export files in the tester's folder (rotated parts included)"))
    skip: list[LandtSkip] = Field(default=[], max_length=2)
    start_timeout_s: float = Field(default=3600.0, gt=0, le=7 * 86400, description=(
        "how long labctl waits for the first exported row after printing the sheet"))

    @model_validator(mode="after")
    def _plain_glob(self) -> LandtChannelEntry:
        if "/" in self.export or "\\" in self.export or ".." in self.export:
            raise ValueError("export is a file name pattern inside the tester's folder, "
                             "not a path")
        return self


class LandtSection(_Entry):
    testers: list[LandtTesterEntry] = Field(min_length=1, max_length=64)
    channels: list[LandtChannelEntry] = Field(min_length=1, max_length=1024)


def landt_problems(spec: StationSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """What is inconsistent in the LANDT section, each with the path it is about."""
    if spec.landt is None:
        return []
    problems: list[tuple[tuple[str | int, ...], str]] = []
    names = [t.name for t in spec.landt.testers]
    for i, n in enumerate(names):
        if n in names[:i]:
            problems.append((("landt", "testers", i, "name"), f"tester name {n!r} is used twice"))
    seen: set[tuple[str, str]] = set()
    for i, ch in enumerate(spec.landt.channels):
        if ch.tester not in names:
            problems.append((("landt", "channels", i, "tester"), f"no LANDT tester named "
                             f"{ch.tester!r}{did_you_mean(ch.tester, names)}"))
        if (ch.tester, ch.channel) in seen:
            problems.append((("landt", "channels", i, "channel"),
                             f"{ch.tester} channel {ch.channel} is listed twice"))
        seen.add((ch.tester, ch.channel))
    return problems


class StationSpec(_Entry):
    name: str = _NAME
    clock: ClockEntry = ClockEntry()
    poll_interval_s: float = Field(default=1.0, ge=0.05, le=3600)
    simulation: SimulationEntry | None = None
    potentiostats: list[PotentiostatEntry] = Field(default=[], max_length=64)
    frames: list[FrameEntry] = Field(default=[], max_length=256)
    channels: list[ChannelEntry] = Field(default=[], max_length=1024)
    landt: LandtSection | None = None

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> StationSpec:
        if not (info.context or {}).get("located"):
            problems = reference_problems(self)
            if problems:
                raise ValueError("; ".join(msg for _, msg in problems))
        return self

    @property
    def instrument_ranges(self) -> InstrumentRanges:
        """What every potentiostat of the station can do (a run may land on any of them).
        A station of LANDT channels only is checked against the SP-300's ranges: a LAND
        tester's channel ranges are not described (docs/landt.md)."""
        if not self.potentiostats:
            return SP300
        ranges = self.potentiostats[0].instrument_ranges
        for p in self.potentiostats[1:]:
            ranges = ranges.narrowest(p.instrument_ranges)
        return ranges

    @property
    def simulated(self) -> bool:
        """True when every instrument below the drivers is simulated."""
        testers = self.landt.testers if self.landt is not None else []
        return (all(p.backend_kind is not Backend.VENDOR for p in self.potentiostats)
                and all(t.backend is LandtBackend.SIMULATED for t in testers))

    @property
    def runs_on_landt(self) -> bool:
        """Cells run on the LANDT channels: the station has those and no potentiostat channel."""
        return self.landt is not None and not self.channels


def reference_problems(spec: StationSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """What is inconsistent across entries, each with the path it is about."""
    problems: list[tuple[tuple[str | int, ...], str]] = landt_problems(spec)
    if not spec.channels and spec.landt is None:
        problems.append((("potentiostats",), "a station needs potentiostats and channels, or "
                         "a landt section with channels"))
    if spec.channels and not spec.potentiostats:
        problems.append((("potentiostats",), "channels name potentiostats, but none is listed"))
    pots = [p.name for p in spec.potentiostats]
    frames = [f.name for f in spec.frames]
    for what, key, names in (("potentiostat", "potentiostats", pots),
                             ("frame", "frames", frames)):
        for i, n in enumerate(names):
            if n in names[:i]:
                problems.append(((key, i, "name"), f"{what} name {n!r} is used twice"))
    seen: set[tuple[str, int]] = set()
    used_frames: set[str] = set()
    for i, ch in enumerate(spec.channels):
        if ch.potentiostat not in pots:
            problems.append(((("channels", i, "potentiostat")),
                             f"no potentiostat named {ch.potentiostat!r}"
                             f"{did_you_mean(ch.potentiostat, pots)}"))
        if ch.frame is not None and ch.frame not in frames:
            problems.append((("channels", i, "frame"),
                             f"no frame named {ch.frame!r}{did_you_mean(ch.frame, frames)}"))
        if (ch.potentiostat, ch.channel) in seen:
            problems.append((("channels", i, "channel"),
                             f"{ch.potentiostat} channel {ch.channel} is listed twice"))
        seen.add((ch.potentiostat, ch.channel))
        if ch.frame is not None:
            if ch.frame in used_frames:
                problems.append((("channels", i, "frame"),
                                 f"frame {ch.frame!r} already holds another channel's cell"))
            used_frames.add(ch.frame)
    simulated = [i for i, p in enumerate(spec.potentiostats)
                 if p.backend_kind is Backend.SIMULATED]
    if simulated and spec.clock.kind is not ClockKind.VIRTUAL:
        problems.append((("potentiostats", simulated[0], "backend"),
                         "in-process simulated instruments run on the virtual clock "
                         "(clock: {kind: virtual})"))
    if spec.clock.kind is ClockKind.VIRTUAL and len(simulated) != len(spec.potentiostats):
        problems.append((("clock", "kind"),
                         "a virtual clock needs every potentiostat simulated in-process"))
    return problems


_STATION_KEYS = re.compile(r"^(potentiostats|channels|landt)\s*:", re.M)
_STEPS_KEY = re.compile(r"^steps\s*:", re.M)


def is_station_file(path: str | Path) -> bool:
    """Whether `labctl validate` should read `path` as a station file: top-level
    `potentiostats:` and `channels:` keys and no `steps:` (read from the first 64 kB, so a
    protocol is never parsed twice and an unreadable file is left to the protocol reader's
    located error)."""
    if not Path(path).is_file():  # a FIFO or device would block or never end
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(65536)
    except OSError:
        return False
    keys = set(_STATION_KEYS.findall(head))
    station = {"potentiostats", "channels"} <= keys or "landt" in keys
    return station and not _STEPS_KEY.search(head)


def parse_station_text(file: str, text: str) -> StationSpec:
    """Validate station text; raises ProtocolError with every located problem."""
    try:
        src = load_yaml(file, text)
    except YamlSyntax as exc:
        raise ProtocolError([exc.error]) from None
    if not isinstance(src.data, dict):
        raise ProtocolError([LocatedError(file, 1, 1, (), "expected a YAML mapping (a station)")])
    try:
        spec = StationSpec.model_validate(to_plain(src.data), context={"located": True})
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
            key = loc[-1] if loc else ""
            if err["type"] == "extra_forbidden":
                errors.append(src.error(loc, f"unknown key '{key}' in station", key=True))
            elif err["type"] == "missing":
                errors.append(src.error(loc, f"missing required key '{key}' in station"))
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
                label = f"'{key}': " if isinstance(key, str) and key else ""
                errors.append(src.error(loc, label + msg))
        raise ProtocolError(errors) from None
    problems = reference_problems(spec)
    if problems:
        raise ProtocolError([src.error(path, msg) for path, msg in problems])
    return spec


def load_station(path: str | Path) -> StationSpec:
    """Read and validate a station file (bounded read; located errors)."""
    file, text = read_text_file(path)
    return parse_station_text(file, text)
