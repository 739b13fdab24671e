"""Equivalent-circuit models and complex non-linear least-squares fitting.

The circuit-string notation is a subset of impedance.py's (``CustomCircuit``) so that
circuits written by users of that package, and the literature that uses it, can be
pasted in unchanged:

* elements are a type followed by an identifier, e.g. ``R0``, ``CPE1``, ``Wo1``;
* ``a-b`` puts elements in series, ``p(a,b,...)`` puts them in parallel, and both nest.

Supported element types (the ones the sodium solid-state cells need):

======  ==========================================  =====================
type    impedance                                    parameters (units)
======  ==========================================  =====================
R       R                                            R (Ohm)
C       1/(iωC)                                      C (F)
L       iωL                                          L (H)
CPE     1/(Q (iω)^α)                                 Q (Ohm^-1 sec^a), α
W       A_W (1 − i)/√ω   (semi-infinite Warburg)     A_W (Ohm sec^-1/2)
Wo      Z0 coth(√(iωτ))/√(iωτ) (finite, open/reflect) Z0 (Ohm), τ (sec)
======  ==========================================  =====================

Parameters are ordered by first appearance in the string and named like impedance.py
(``R0``, ``CPE1_0``, ``CPE1_1``) so results can be compared one-to-one.

The fit minimises the *unweighted* stacked real/imaginary residuals with default
bounds [0, inf) (α of a CPE ≤ 1) — the same objective and bound semantics as
impedance.py's default ``curve_fit`` path — because equal objectives are what make
results comparable across tools. ``weight_by_modulus=True`` switches to 1/|Z| weights,
which is the better choice when the spectrum spans decades of |Z|.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import OptimizeResult, least_squares

__all__ = [
    "ELEMENTS",
    "Circuit",
    "CircuitFit",
    "ElementType",
    "fit_circuit",
    "least_squares_with_covariance",
    "zarc",
]

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------- elements


def _r(p: FloatArray, w: FloatArray) -> ComplexArray:
    return np.full(w.shape, p[0], dtype=complex)


def _c(p: FloatArray, w: FloatArray) -> ComplexArray:
    return 1.0 / (1j * w * p[0])


def _l(p: FloatArray, w: FloatArray) -> ComplexArray:
    return 1j * w * p[0]


def _cpe(p: FloatArray, w: FloatArray) -> ComplexArray:
    return 1.0 / (p[0] * (1j * w) ** p[1])


def _w(p: FloatArray, w: FloatArray) -> ComplexArray:
    return p[0] * (1.0 - 1j) / np.sqrt(w)


def _wo(p: FloatArray, w: FloatArray) -> ComplexArray:
    # coth(x)/x written as 1/(x tanh x): tanh saturates cleanly at large |x| where
    # cosh/sinh would overflow for long diffusion times.
    x = np.sqrt(1j * w * p[1])
    return p[0] / (x * np.tanh(x))


@dataclass(frozen=True)
class ElementType:
    """One circuit element type: how many parameters, their units, its impedance."""

    n_params: int
    units: tuple[str, ...]
    impedance: Callable[[FloatArray, FloatArray], ComplexArray]
    upper_bounds: tuple[float, ...]


ELEMENTS: dict[str, ElementType] = {
    "R": ElementType(1, ("Ohm",), _r, (np.inf,)),
    "C": ElementType(1, ("F",), _c, (np.inf,)),
    "L": ElementType(1, ("H",), _l, (np.inf,)),
    # α ≤ 1: beyond 1 a CPE is no longer a physical (passive, capacitive) element.
    "CPE": ElementType(2, ("Ohm^-1 sec^a", ""), _cpe, (np.inf, 1.0)),
    "W": ElementType(1, ("Ohm sec^-1/2",), _w, (np.inf,)),
    "Wo": ElementType(2, ("Ohm", "sec"), _wo, (np.inf, np.inf)),
}

# Longest type names first so "CPE1" is not read as "C" + "PE1", nor "Wo1" as "W" + "o1".
_ELEMENT_RE = re.compile(
    "(" + "|".join(sorted(ELEMENTS, key=len, reverse=True)) + r")([A-Za-z0-9_]*)"
)


def zarc(frequencies: ArrayLike, r: float, tau: float, n: float) -> ComplexArray:
    """Impedance of a ZARC (R ∥ CPE written with its time constant), R/(1 + (iωτ)^n).

    Synthetic DRT and KK tests are specified in (R, τ, n) because those are what the
    DRT recovers; an R ∥ CPE in circuit notation has Q = τ^n / R.
    """
    w = 2.0 * np.pi * np.asarray(frequencies, dtype=float)
    return r / (1.0 + (1j * w * tau) ** n)


# --------------------------------------------------------------------------- parser

# A parsed circuit is a tree of ("E", type, first_param_index) | ("S", children) |
# ("P", children); evaluating it is a short recursion over numpy arrays.
_Node = Union[tuple[str, str, int], tuple[str, list["_Node"]]]  # noqa: UP007 (runtime alias)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.names: list[str] = []
        self.units: list[str] = []
        self.upper: list[float] = []
        self.elements: list[str] = []

    def error(self, msg: str) -> ValueError:
        return ValueError(f"circuit {self.text!r}, position {self.pos}: {msg}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.error(f"expected {ch!r}, found {self.peek() or 'end'!r}")
        self.pos += 1

    def series(self) -> _Node:
        parts = [self.term()]
        while self.peek() == "-":
            self.pos += 1
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else ("S", parts)

    def term(self) -> _Node:
        if self.text.startswith("p(", self.pos):
            self.pos += 2
            branches = [self.series()]
            while self.peek() == ",":
                self.pos += 1
                branches.append(self.series())
            self.expect(")")
            if len(branches) < 2:
                raise self.error("p(...) needs at least two branches")
            return ("P", branches)
        m = _ELEMENT_RE.match(self.text, self.pos)
        if m is None:
            raise self.error(f"unknown element; known types: {', '.join(ELEMENTS)}")
        name, etype = m.group(0), m.group(1)
        if name in self.elements:
            raise self.error(f"element {name!r} used twice")
        self.pos = m.end()
        spec = ELEMENTS[etype]
        first = len(self.names)
        self.elements.append(name)
        for i in range(spec.n_params):
            self.names.append(name if spec.n_params == 1 else f"{name}_{i}")
        self.units.extend(spec.units)
        self.upper.extend(spec.upper_bounds)
        return ("E", etype, first)


def _evaluate(node: _Node, p: FloatArray, w: FloatArray) -> ComplexArray:
    kind = node[0]
    if kind == "E":
        _, etype, first = node  # type: ignore[misc]
        spec = ELEMENTS[etype]  # type: ignore[index]
        return spec.impedance(p[first : first + spec.n_params], w)  # type: ignore[operator]
    children = node[1]
    if kind == "S":
        z = _evaluate(children[0], p, w)  # type: ignore[index]
        for child in children[1:]:  # type: ignore[union-attr]
            z = z + _evaluate(child, p, w)
        return z
    y = 1.0 / _evaluate(children[0], p, w)  # type: ignore[index]
    for child in children[1:]:  # type: ignore[union-attr]
        y = y + 1.0 / _evaluate(child, p, w)
    return 1.0 / y


class Circuit:
    """A parsed equivalent circuit; evaluate with :meth:`impedance`.

    Parsing happens once here (no ``eval`` of user strings, unlike impedance.py), so a
    fit's thousands of model evaluations are plain numpy arithmetic.
    """

    def __init__(self, spec: str) -> None:
        text = "".join(spec.split())
        if not text:
            raise ValueError("empty circuit string")
        parser = _Parser(text)
        self._tree = parser.series()
        if parser.pos != len(text):
            raise parser.error("unexpected trailing text")
        self.spec: str = text
        self.param_names: tuple[str, ...] = tuple(parser.names)
        self.param_units: tuple[str, ...] = tuple(parser.units)
        self.element_names: tuple[str, ...] = tuple(parser.elements)
        self._upper = tuple(parser.upper)

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    def default_bounds(self) -> tuple[FloatArray, FloatArray]:
        """Lower bounds 0 and upper bounds inf (CPE α ≤ 1), as impedance.py's defaults."""
        return np.zeros(self.n_params), np.array(self._upper, dtype=float)

    def impedance(self, params: ArrayLike, frequencies: ArrayLike) -> ComplexArray:
        """Complex impedance (Ohm) at ``frequencies`` (Hz) for parameter vector ``params``."""
        p = np.asarray(params, dtype=float)
        if p.shape != (self.n_params,):
            raise ValueError(f"{self.spec} needs {self.n_params} parameters, got {p.shape}")
        w = 2.0 * np.pi * np.asarray(frequencies, dtype=float)
        return np.asarray(_evaluate(self._tree, p, w), dtype=complex)

    def __repr__(self) -> str:
        return f"Circuit({self.spec!r})"


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class CircuitFit:
    """Result of :func:`fit_circuit`.

    ``std_errors`` are one-sigma estimates from the Jacobian at the optimum,
    ``sqrt(diag((JᵀJ)⁻¹ · χ²/(2N − P)))`` — the same definition as curve_fit (and hence
    impedance.py's ``conf_``). They are only meaningful when the model is identifiable;
    a standard error larger than its value flags a parameter the data cannot pin down.
    """

    circuit: str
    names: tuple[str, ...]
    units: tuple[str, ...]
    values: FloatArray
    std_errors: FloatArray
    covariance: FloatArray
    frequencies: FloatArray
    z_fit: ComplexArray
    residuals: ComplexArray  # data − model, Ohm
    chi_square: float  # weighted sum of squared residuals (real + imag)
    success: bool
    message: str
    nfev: int

    def as_dict(self) -> dict[str, tuple[float, float, str]]:
        """``{name: (value, std_error, unit)}`` for display and storage."""
        return {
            n: (float(v), float(e), u)
            for n, v, e, u in zip(self.names, self.values, self.std_errors, self.units)
        }


def fit_circuit(
    circuit: str | Circuit,
    frequencies: ArrayLike,
    impedance: ArrayLike,
    initial_guess: Sequence[float],
    *,
    bounds: tuple[ArrayLike, ArrayLike] | None = None,
    weight_by_modulus: bool = False,
    ftol: float = 1e-13,
    xtol: float = 1e-8,
    gtol: float = 1e-8,
    max_nfev: int = 100_000,
    x_scale: str | ArrayLike = 1.0,
) -> CircuitFit:
    """Fit ``circuit`` to a spectrum by bounded non-linear least squares.

    Residuals are ``[Re(Z_model − Z), Im(Z_model − Z)]`` (optionally divided by |Z|),
    solved with ``scipy.optimize.least_squares`` (trust-region reflective, 2-point
    Jacobian, ``ftol=1e-13``): the settings impedance.py uses through curve_fit, so a
    fit from the same start lands on the same optimum.

    ``x_scale``, ``xtol`` and ``gtol`` are passed to least_squares; the defaults match
    impedance.py. Parameters span 1e-9 (CPE Q, L) to 1e3 (R); ``x_scale=abs(guess)``
    is a reasonable alternative, whereas ``x_scale="jac"`` was seen to stall with the
    default bounds on the paper's circuit.
    """
    c = circuit if isinstance(circuit, Circuit) else Circuit(circuit)
    f = np.asarray(frequencies, dtype=float)
    z = np.asarray(impedance, dtype=complex)
    if f.shape != z.shape or f.ndim != 1:
        raise ValueError("frequencies and impedance must be 1-D arrays of equal length")
    p0 = np.asarray(initial_guess, dtype=float)
    if p0.shape != (c.n_params,):
        raise ValueError(
            f"{c.spec} has {c.n_params} parameters {c.param_names}, got {p0.size} guesses"
        )
    lo, hi = c.default_bounds() if bounds is None else (
        np.broadcast_to(np.asarray(bounds[0], dtype=float), p0.shape),
        np.broadcast_to(np.asarray(bounds[1], dtype=float), p0.shape),
    )
    target = np.concatenate([z.real, z.imag])
    sigma = np.tile(np.abs(z), 2) if weight_by_modulus else np.ones_like(target)

    def residual(p: FloatArray) -> FloatArray:
        zm = c.impedance(p, f)
        return (np.concatenate([zm.real, zm.imag]) - target) / sigma

    res, cov = least_squares_with_covariance(
        residual, p0, (lo, hi), ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev,
        x_scale=x_scale,
    )
    z_fit = c.impedance(res.x, f)
    return CircuitFit(
        circuit=c.spec,
        names=c.param_names,
        units=c.param_units,
        values=res.x,
        std_errors=np.sqrt(np.abs(np.diag(cov))),
        covariance=cov,
        frequencies=f,
        z_fit=z_fit,
        residuals=z - z_fit,
        chi_square=2.0 * float(res.cost),
        success=bool(res.success),
        message=str(res.message),
        nfev=int(res.nfev),
    )


def least_squares_with_covariance(
    residual: Callable[[FloatArray], FloatArray], p0: FloatArray,
    bounds: tuple[FloatArray, FloatArray], *, ftol: float = 1e-13, xtol: float = 1e-8,
    gtol: float = 1e-8, max_nfev: int = 100_000, x_scale: str | ArrayLike = 1.0,
) -> tuple[OptimizeResult, FloatArray]:
    """Bounded trust-region least squares and the curve_fit-style parameter covariance.

    The one solver of every impedance model here (circuit strings and the ZARC
    parametrisation of labctl.analysis.eis), so their standard errors mean the same thing.
    """
    res = least_squares(
        residual, p0, jac="2-point", bounds=bounds, method="trf",
        ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev, x_scale=x_scale,
    )
    return res, _covariance(res.jac, 2.0 * res.cost, res.fun.size)


def _covariance(jac: FloatArray, chi_square: float, n_obs: int) -> FloatArray:
    """(JᵀJ)⁻¹ scaled by the residual variance, via SVD with tiny singular values dropped.

    The pseudo-inverse keeps a rank-deficient fit (e.g. a circuit with more elements
    than the data resolves) from producing garbage; such parameters get large errors.
    """
    _, s, vt = np.linalg.svd(jac, full_matrices=False)
    keep = s > np.finfo(float).eps * max(jac.shape) * (s[0] if s.size else 0.0)
    s, vt = s[keep], vt[keep]
    cov = (vt.T / s**2) @ vt
    dof = n_obs - jac.shape[1]
    if dof > 0:
        return cov * (chi_square / dof)
    return np.full_like(cov, np.inf)
