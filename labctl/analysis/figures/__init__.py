"""The paper's figure kinds, drawn from one or more recorded runs.

`draw(kind, runs)` takes records (`model.RunData`, read by `labctl.analysis.plots`) and returns
a matplotlib Figure; nothing here reads the database. Kinds and the panels of Wu et al. 2025
(J. Mater. Chem. A 13, 22074) they reproduce:

==============  ===============================================================
voltage         voltage and current density against time, runs overlaid
ccd             Fig. 1b: CCD ramp voltage and current-density staircase overlaid
ccd-summary     Fig. 1c: CCD against stack pressure (or K content), per composition
stripping       Fig. 1d/e: stripping curves over the Na–K phase windows, theory lines
nyquist         Fig. 2c–e: spectra with the fitted circuit, one panel per run
bode            |Z| and phase against frequency
drt             DRT γ(τ) of every spectrum
drt-map         Fig. 3b–d: DRT against time of spectrum, one panel per run
cv              Fig. 6: CV cycles in current density, one panel per run
==============  ===============================================================
"""
