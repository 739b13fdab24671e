"""Na–K chemistry shared by the digital twin and the analyses: the liquid window of the Na–K
phase diagram, Na activity in the liquid alloy and the theoretical capacities derived from it
(Wu et al., J. Mater. Chem. A 2025, Fig. 1 and the Na–K diagram it cites).

A neutral package: it imports neither `labctl` nor `labctl_drivers`, so the simulator and the
analyses read the same tables without the analyses depending on the simulator.
"""
