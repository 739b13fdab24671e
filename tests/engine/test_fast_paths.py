"""The engine's per-poll fast paths give their reference's results, bit for bit.

`check_poll_limits` and `poll_charge` take a poll of one sample (what 1 s polling brings) on
Python floats; `check_limits` and `step_charge`, the readable versions, are the reference. Any
input, including NaN and infinite samples, bounds that are None, and polls of more than one
sample (which the fast paths hand to the reference), must give the same message or the same
charges.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.engine.channel import check_limits, check_poll_limits, poll_charge, step_charge
from labctl.protocol.resolved import Limits

values = st.floats(allow_nan=True, allow_infinity=True, width=64)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
bounds = st.one_of(st.none(), st.floats(min_value=-10.0, max_value=10.0, allow_nan=False))
limits = st.builds(Limits, E_min_V=bounds, E_max_V=bounds, I_max_mA=bounds, Q_max_mAh=bounds,
                   P_min_MPa=bounds, P_max_MPa=bounds)
samples = st.lists(st.tuples(values, values), min_size=0, max_size=4)


@settings(max_examples=500, deadline=None)
@given(limits, samples, values, st.one_of(st.none(), values))
def test_poll_limits_are_the_reference(lim: Limits, polled: list[tuple[float, float]],
                                       Q: float, P: float | None) -> None:
    E = np.array([e for e, _ in polled], dtype=float)
    I_mA = np.array([i for _, i in polled], dtype=float)
    assert check_poll_limits(lim, E, I_mA, Q, P) == check_limits(lim, E, I_mA, Q, P)


def test_poll_limits_trip_on_one_sample() -> None:
    """Not only 'None == None': each bound trips on a one-sample poll with the reference's text."""
    lim = Limits(E_min_V=-1.0, E_max_V=1.0, I_max_mA=2.0, Q_max_mAh=0.5, P_min_MPa=8.0,
                 P_max_MPa=12.0)
    cases = [([1.5], [0.0], 0.0, 10.0), ([-1.5], [0.0], 0.0, 10.0), ([0.0], [-2.5], 0.0, 10.0),
             ([0.0], [0.0], 0.6, 10.0), ([0.0], [0.0], 0.0, 7.0), ([0.0], [0.0], 0.0, 13.0)]
    got = [check_poll_limits(lim, np.array(E), np.array(I), Q, P) for E, I, Q, P in cases]
    assert all(g is not None for g in got)
    assert got == [check_limits(lim, np.array(E), np.array(I), Q, P) for E, I, Q, P in cases]


@settings(max_examples=500, deadline=None)
@given(finite, finite, st.lists(st.tuples(finite, values), min_size=1, max_size=4))
def test_poll_charge_is_the_reference(q0: float, last_t: float,
                                      polled: list[tuple[float, float]]) -> None:
    t = np.array([s for s, _ in polled], dtype=np.float64)
    I_mA = np.array([i for _, i in polled], dtype=np.float64)
    with np.errstate(all="ignore"):  # huge or NaN currents: numpy says so, floats do not
        got, want = poll_charge(q0, last_t, t, I_mA), step_charge(q0, last_t, t, I_mA)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()
