"""A launch's hold on its station's channels: lease them, switch a crashed holder's off first.

Why: without leases a second `labctl run --station` could switch off a channel a live run was
using, and a new run stopped only the channels it used, so a crashed run's other channels kept
their current. Now, before any instrument is touched, the channels the runs will use are leased
in the database (`labctl.recording.leases`); a channel another live labctl holds is refused in
one line and nothing is touched. Channels whose holder is gone — every one of the station's,
used by these runs or not — are switched off as the station's first act on connecting
(`open_station(safe_first=...)`), recorded on the crashed runs, then given back unless used.

Only instruments that outlive a labctl process are leased: real ones and a simulated bench in
its own process (`labctl sim serve`). The in-process simulated bench (`--sim`) is private to
its process, so two `--sim` runs never share a channel.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from labctl.engine.events import EventKind, Severity
from labctl.recording import leases
from labctl.recording.recorder import Recorder
from labctl.stations import StationError
from labctl.stations.schema import Backend, StationSpec


class ChannelInUse(StationError):
    """A channel the runs need is leased by another labctl (one line; nothing was touched)."""


def _shared(spec: StationSpec) -> set[str]:
    """Potentiostats that outlive this process (leased): all but in-process simulated ones."""
    return {p.name for p in spec.potentiostats if p.backend_kind is not Backend.SIMULATED}


@dataclass
class StationClaim:
    """The leases one launch holds on its station (empty for a private in-process bench)."""

    engine: Engine
    claim: leases.ChannelClaim | None
    #: set once the orphans are off and recorded; until then they stay leased when released
    #: (under this process's name and the crashed run's id), so that if this launch fails
    #: before switching them off, the next labctl finds them orphaned again
    orphans_off: bool = field(default=False)

    @classmethod
    def take(cls, engine: Engine, spec: StationSpec, n_cells: int) -> StationClaim:
        """Lease the channels `n_cells` cells take (in station order) and every orphan."""
        shared = _shared(spec)
        if not shared:
            return cls(engine, None)
        wanted = [leases.ChannelKey(ch.potentiostat, ch.channel)
                  for ch in spec.channels[:n_cells] if ch.potentiostat in shared]
        try:
            return cls(engine, leases.claim_channels(engine, spec.name, wanted))
        except leases.ChannelLeased as exc:
            raise ChannelInUse(str(exc)) from None

    @property
    def orphans(self) -> tuple[leases.Orphan, ...]:
        return () if self.claim is None else self.claim.orphans

    def safe_first(self, spec: StationSpec) -> list[tuple[str, int]]:
        """(potentiostat, channel) of every orphan the station file still names."""
        known = {p.name for p in spec.potentiostats}
        return [(o.key.instrument, o.key.channel) for o in self.orphans
                if o.key.instrument in known]

    def record_safe_state(self, spec: StationSpec) -> None:
        """After `open_station` switched the orphans off: record it on the crashed runs and
        give back the orphans these runs do not use. An orphan on an instrument the station
        file no longer names could not be switched off: that is recorded on its run."""
        if self.claim is None or not self.orphans:
            self.orphans_off = True
            return
        me = self.claim.holder.describe()
        reached = set(self.safe_first(spec))
        recorder = Recorder(self.engine)
        for o in self.orphans:
            done = (o.key.instrument, o.key.channel) in reached
            if o.run_id is None:
                continue
            where = o.key.describe(self.claim.station)
            if done:
                recorder.event(o.run_id, EventKind.SAFE_STATE,
                               f"{where} switched off by labctl {me} on connecting: its "
                               f"holder ({o.holder.describe()}) was gone",
                               severity=Severity.WARNING)
            else:
                recorder.event(o.run_id, EventKind.FAULT,
                               f"{where} could not be switched off: the station file no "
                               "longer names its instrument", severity=Severity.ERROR)
        unused = [o.key for o in self.orphans
                  if o.key not in self.claim.wanted and (o.key.instrument, o.key.channel)
                  in reached]
        leases.release_channels(self.engine, self.claim, unused)
        self.orphans_off = True

    def name_runs(self, runs: Iterable[tuple[str, int, int]]) -> None:
        """Say which run each leased channel carries: (potentiostat, channel, run id)."""
        if self.claim is not None:
            leases.name_runs(self.engine, self.claim, {
                leases.ChannelKey(pot, ch): run_id for pot, ch, run_id in runs
                if leases.ChannelKey(pot, ch) in self.claim.wanted})

    def release(self) -> None:
        """Give back the claim's leases (the launch is over), but not orphans that were not
        switched off yet."""
        if self.claim is None:
            return
        keep = set() if self.orphans_off else {o.key for o in self.orphans}
        leases.release_channels(self.engine, self.claim,
                                [k for k in self.claim.wanted if k not in keep])
