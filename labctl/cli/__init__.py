"""labctl's command line: run protocols, look at runs, manage the database.

Every command turns expected failures (a bad protocol, a missing file, an unreachable database,
an unknown option) into one clear line on stderr and a non-zero exit status, never a traceback.
Exit status 2 means "your input is wrong"; 1 means "could not be done"; 130 means Ctrl-C.

One module per group of commands; each registers on `labctl.cli.app.app`.
"""

# The order of these imports is the order of the commands in --help.
from labctl.cli import launching, inspecting, notes, controlling, checking  # noqa: F401, I001
from labctl.cli import products, bench, database  # noqa: F401
from labctl.cli import web  # noqa: F401
from labctl.cli.app import app
from labctl.cli.main import main

__all__ = ["app", "main"]
