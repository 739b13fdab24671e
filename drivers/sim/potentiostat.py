"""A simulated SP-300: two channels (by default), technique semantics like the firmware's.

Each channel is wired to a cell model (`labctl_drivers.sim.cell_model.CellModel`) and to the bench's
clock. Nothing runs in the background: when polled, a channel integrates its cell from the last
poll up to `clock.now()` (or to the moment its technique ended on a limit, exactly as the
instrument would have stopped there), and returns the points it "buffered" meanwhile.

Faults (`labctl_drivers.sim.faults`) make it disconnect, time out or return DLL error codes, so the
engine's safe-state paths are exercised by the tests.

Recording: points are taken every `Recording.every_dt_s`, the cell being integrated at that
step. The real instrument's *extra* dE-triggered records (a point as soon as E moved by dE
between two dt records) are not reproduced: the twin would have to integrate finer than the
record interval to know when E crossed, which costs more than the ~0.3 % of extra rows it would
add (echem.md §5). CV records every dE by construction (potential steps of dE).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from labctl_drivers.clock import Clock
from labctl_drivers.interfaces import (
    ChannelReading,
    ChannelState,
    EndReason,
    TechniqueEnd,
    ImpedancePoint,
    InstrumentError,
    PointBatch,
)
from labctl_drivers.sim.cell_model import CellModel
from labctl_drivers.sim.faults import FaultPlan
from labctl_drivers.techniques import (
    ConstantCurrent,
    ConstantVoltage,
    CyclicVoltammetry,
    GalvanoEIS,
    OpenCircuit,
    PotentioEIS,
    Technique,
    eis_frequencies,
)

MAX_CURRENT_A = 0.5  # SP-300 standard board
MAX_VOLTAGE_V = 10.0
EIS_F_RANGE_HZ = (1e-5, 7e6)
EIS_NOISE = 0.002  # relative, per point


def eis_point_duration_s(frequency_Hz: float, averages: int) -> float:
    """Time the instrument spends at one frequency: 2 periods + 10 % wait, at least 0.5 s."""
    return max(0.5, averages * 2.1 / frequency_Hz)


class SimulatedChannel:
    def __init__(
        self, index: int, clock: Clock, rng: np.random.Generator, faults: FaultPlan,
        instrument_name: str,
    ) -> None:
        self.index = index
        self.clock = clock
        self.rng = rng
        self.faults = faults
        self.instrument_name = instrument_name
        self.cell: CellModel | None = None
        self._technique: Technique | None = None
        self._state = ChannelState.IDLE
        self._t0 = 0.0  # clock time at technique start
        self._t = 0.0  # technique time integrated so far
        self._charge_C = 0.0
        self._end_reason: str | None = None
        self._eis_done = 0
        self._cv_E = 0.0
        self._last_E = 0.0
        self.before_poll: Callable[[], None] = lambda: None  # the bench applies cell faults

    # ---- PotentiostatChannel -------------------------------------------------------------
    def connect_cell(self, cell: CellModel) -> None:
        self.cell = cell

    def load(self, technique: Technique) -> None:
        self.faults.check(self.instrument_name, "load", self.clock.now())
        if self._state is ChannelState.RUNNING:
            raise InstrumentError(f"channel {self.index} is running; stop it before loading")
        _check_ranges(technique)
        self._technique = technique

    def start(self) -> None:
        self.faults.check(self.instrument_name, "start", self.clock.now())
        if self._technique is None or self.cell is None:
            raise InstrumentError(f"channel {self.index}: nothing loaded or no cell connected")
        self._state = ChannelState.RUNNING
        self._t0 = self.clock.now()
        self._t = 0.0
        self._charge_C = 0.0
        self._end_reason = None
        self._eis_done = 0
        if isinstance(self._technique, CyclicVoltammetry):
            self._cv_E = self._technique.E_start_V

    def stop(self) -> None:
        """Open the circuit. Never fails: a safe state must always be reachable."""
        if self._state is ChannelState.RUNNING:
            self._state = ChannelState.IDLE
            self._end_reason = "stopped"

    def poll(self) -> ChannelReading:
        now = self.clock.now()
        self.faults.check(self.instrument_name, "poll", now)
        self.before_poll()
        if self._state is not ChannelState.RUNNING:
            return self._reading()
        assert self._technique is not None and self.cell is not None
        target = now - self._t0
        tech = self._technique
        if isinstance(tech, (PotentioEIS, GalvanoEIS)):
            imp = self._advance_eis(tech, target)
            return self._reading(impedance=imp)
        if isinstance(tech, OpenCircuit):
            batch = self._advance_current(0.0, tech.duration_s, tech.recording.every_dt_s,
                                          target, None, None, None)
        elif isinstance(tech, ConstantCurrent):
            batch = self._advance_current(
                tech.current_A, tech.duration_s, tech.recording.every_dt_s, target,
                tech.E_min_V, tech.E_max_V, tech.charge_limit_C,
            )
        elif isinstance(tech, ConstantVoltage):
            batch = self._advance_voltage(tech, target)
        else:
            batch = self._advance_cv(tech, target)
        return self._reading(points=batch)

    def _reading(self, **data: object) -> ChannelReading:
        ends = ()
        if self._state is not ChannelState.RUNNING and self._end_reason is not None:
            ends = (TechniqueEnd(0, EndReason(self._end_reason), self._t),)
        return ChannelReading(self._state, ends=ends, elapsed_s=self._t,  # type: ignore[arg-type]
                              **data)

    # ---- technique integration -----------------------------------------------------------
    def _finish(self, reason: str) -> None:
        self._state = ChannelState.IDLE
        self._end_reason = reason

    def _advance_current(
        self, current_A: float, duration_s: float, dt: float, target: float,
        E_min: float | None, E_max: float | None, charge_limit_C: float | None,
    ) -> PointBatch:
        """Constant current (0 for OCV) up to `target`; ends on time, charge or a voltage limit."""
        assert self.cell is not None
        end = min(target, duration_s)
        n = math.floor((end - self._t) / dt + 1e-9)
        limit = None
        if charge_limit_C is not None and current_A != 0.0:
            n_q = math.ceil((charge_limit_C - self._charge_C) / (abs(current_A) * dt) - 1e-9)
            if n_q <= n:
                n, limit = max(n_q, 0), "charge"
        parts_t, parts_E = [], []
        if n > 0:
            E = self.cell.run_constant_current(current_A, dt, n, E_min, E_max)
            parts_t.append(self._t + dt * np.arange(1, len(E) + 1))
            parts_E.append(E)
            self._t += dt * len(E)
            self._charge_C += abs(current_A) * dt * len(E)
            # A voltage limit hit: the firmware stops the technique there. The cell returns the
            # crossing sample as its last one, so test that sample, not only a short batch: when
            # a poll asks for exactly one record (poll interval <= record interval) a crossing
            # batch is as long as asked for, and the step would otherwise run past its cut-off.
            crossed = (E_max is not None and E[-1] > E_max) or (
                E_min is not None and E[-1] < E_min)
            if len(E) < n or crossed:
                limit = "E_max" if E_max is not None and E[-1] > E_max else "E_min"
                n = -1
        rest = duration_s - self._t
        if limit is None and target >= duration_s and 1e-9 < rest < dt:  # last partial record
            E = self.cell.run_constant_current(current_A, rest, 1, E_min, E_max)
            parts_t.append(np.array([duration_s]))
            parts_E.append(E)
            self._t = duration_s
            self._charge_C += abs(current_A) * rest
        if limit is not None:
            self._finish(limit)
        elif self._t >= duration_s - 1e-9:
            self._finish("time")
        if not parts_t:
            return PointBatch.empty()
        if len(parts_t) == 1:  # the usual poll: no concatenation to pay for
            t, E = parts_t[0], parts_E[0]
        else:
            t, E = np.concatenate(parts_t), np.concatenate(parts_E)
        return PointBatch(t, E, np.full(len(t), current_A))

    def _advance_voltage(self, tech: ConstantVoltage, target: float) -> PointBatch:
        assert self.cell is not None
        dt = tech.recording.every_dt_s
        end = min(target, tech.duration_s)
        ts, Es, Is = [], [], []
        while self._t + dt <= end + 1e-9:
            i = self.cell.solve_current(tech.voltage_V, dt)
            self._t += dt
            ts.append(self._t)
            Es.append(tech.voltage_V)
            Is.append(i)
            if tech.I_limit_A is not None and abs(i) > tech.I_limit_A:
                self._finish("I_limit")
                break
        if self._state is ChannelState.RUNNING and self._t >= tech.duration_s - 1e-9:
            self._finish("time")
        return PointBatch(np.array(ts), np.array(Es), np.array(Is))

    def _advance_cv(self, tech: CyclicVoltammetry, target: float) -> PointBatch:
        assert self.cell is not None
        dE = tech.record_every_dE_V
        dt = dE / tech.scan_rate_V_s
        path = [tech.E_start_V, *tech.vertices_V * tech.cycles]
        legs = list(itertools.pairwise(path))
        total = sum(abs(b - a) for a, b in legs) / tech.scan_rate_V_s
        ts, Es, Is = [], [], []
        while self._t + dt <= min(target, total) + 1e-9:
            self._t += dt
            E = _cv_potential(legs, tech.scan_rate_V_s, self._t)
            ts.append(self._t)
            Es.append(E)
            Is.append(self.cell.solve_current(E, dt))
        if self._t >= total - dt / 2:
            self._finish("time")
        return PointBatch(np.array(ts), np.array(Es), np.array(Is))

    def _advance_eis(self, tech: PotentioEIS | GalvanoEIS, target: float) -> list[ImpedancePoint]:
        assert self.cell is not None
        freqs = eis_frequencies(tech.f_high_Hz, tech.f_low_Hz, tech.points_per_decade)
        out: list[ImpedancePoint] = []
        # the twin's one-frequency shortcut (same value as impedance([f])[0]); any other
        # CellModel goes through the protocol's array method
        at: Callable[[float], complex] | None = getattr(self.cell, "impedance_at", None)
        while self._eis_done < len(freqs):
            f = freqs[self._eis_done]
            dur = eis_point_duration_s(f, tech.averages)
            if self._t + dur > target + 1e-9:
                break
            self._last_E = self.cell.step(0.0, dur)
            self._t += dur
            z = at(f) if at is not None else complex(self.cell.impedance(np.array([f]))[0])
            z *= 1.0 + EIS_NOISE * complex(self.rng.standard_normal(), self.rng.standard_normal())
            out.append(ImpedancePoint(self._t, f, z.real, z.imag, self._last_E, 0.0))
            self._eis_done += 1
        if self._eis_done == len(freqs):
            self._finish("complete")
        return out


def _cv_potential(legs: list[tuple[float, float]], rate: float, t: float) -> float:
    for a, b in legs:
        leg_t = abs(b - a) / rate
        if t <= leg_t:
            return a + math.copysign(rate * t, b - a)
        t -= leg_t
    return legs[-1][1]


def _check_ranges(tech: Technique) -> None:
    """Refuse what the real SP-300 would refuse (the protocol layer checks this first)."""
    if isinstance(tech, ConstantCurrent) and abs(tech.current_A) > MAX_CURRENT_A:
        raise InstrumentError(f"current {tech.current_A} A beyond the ±{MAX_CURRENT_A} A range")
    if isinstance(tech, ConstantVoltage) and abs(tech.voltage_V) > MAX_VOLTAGE_V:
        raise InstrumentError(f"voltage {tech.voltage_V} V beyond ±{MAX_VOLTAGE_V} V")
    if isinstance(tech, (PotentioEIS, GalvanoEIS)):
        lo, hi = EIS_F_RANGE_HZ
        if not (lo <= tech.f_low_Hz < tech.f_high_Hz <= hi):
            raise InstrumentError(f"EIS range {tech.f_low_Hz}-{tech.f_high_Hz} Hz not in {lo}-{hi}")


class SimulatedSP300:
    """The simulated instrument; satisfies `labctl_drivers.interfaces.Potentiostat`."""

    simulated = True

    def __init__(
        self, name: str, clock: Clock, rng: np.random.Generator, faults: FaultPlan,
        n_channels: int = 2,
    ) -> None:
        self.name = name
        self.faults = faults
        self._channels = [
            SimulatedChannel(i, clock, rng, faults, name) for i in range(n_channels)
        ]
        self.connected = False

    @property
    def n_channels(self) -> int:
        return len(self._channels)

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        for ch in self._channels:
            ch.stop()
        self.connected = False

    def channel(self, index: int) -> SimulatedChannel:
        return self._channels[index]
