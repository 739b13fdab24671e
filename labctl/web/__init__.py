"""labctl's web dashboard: what runs, live traces and events, operator requests over HTTP.

A layer on top, beside the CLI: it reads the database only through `labctl.recording`'s
readers and writes nothing but operator requests, through the recorder's `request_control`,
the same path as `labctl pause/resume/abort`. `labctl serve` starts it (labctl.cli.web).
"""
