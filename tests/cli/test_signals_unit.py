"""`labctl.interrupts` in this process: real signals to ourselves are recorded, raised only at a
safe point, and the previous handlers come back."""

from __future__ import annotations

import os
import signal

import pytest

from labctl import interrupts


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_is_recorded_and_raised_at_the_safe_point(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    with interrupts.stop_signals():
        with interrupts.database_write():
            os.kill(os.getpid(), sig)  # delivered here, inside the "write": nothing raised
            assert interrupts.stop_requested() is not None
        assert interrupts.arrived_during_write()
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal while stopping: ignored
        with pytest.raises(KeyboardInterrupt) as stop:
            interrupts.raise_if_stopping()
    assert isinstance(stop.value, interrupts.StopRequested)
    assert stop.value.signum == sig and stop.value.exit_status == 128 + sig
    assert str(stop.value) == interrupts.STOP_SIGNALS[sig]
    assert interrupts.last_stop() is stop.value
    assert signal.getsignal(sig) == before
    assert interrupts.stop_requested() is None  # cleared once acted on


def test_no_signal_no_stop() -> None:
    with interrupts.stop_signals():
        interrupts.raise_if_stopping()
        assert interrupts.stop_requested() is None
