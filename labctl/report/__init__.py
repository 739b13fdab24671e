"""A lab report of recorded runs: one self-contained HTML file a PI opens anywhere.

`labctl report RUN...` gathers each run's record (cell, station, labctl version), steps,
results with units and quality flags, events, notes and protocol text (`contents`), draws
every figure kind that applies to the runs (labctl.analysis.figures), and renders one HTML page
with the figures embedded as data URIs and the style inline (`html`): no file, font, script or
stylesheet is fetched from anywhere, so the report reads the same from a mail attachment.

Nothing is imported here so that `labctl show` can use `labctl.report.numbers` cheaply.
"""
