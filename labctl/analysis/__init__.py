"""Impedance analysis maths: DRT, equivalent circuits, Kramers-Kronig checks.

Pure functions on numpy arrays, no database or instrument access, so they can run
in the GUI, in batch re-analysis and in tests alike.
"""
