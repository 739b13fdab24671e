"""The console entry point: run the app and turn expected errors into one line on stderr.

Exit status 2 means "your input is wrong"; 1 means "could not be done"; a stop signal gives the
shell's 128 + its number: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP — each after every channel
was switched off and the runs recorded as aborted (`labctl.interrupts`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import typer

from labctl.cli.app import Failure, UserError, app, err
from labctl.interrupts import StopRequested, last_stop

try:  # recent typer vendors click; older releases use the click package
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException, UsageError


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and turn expected errors into one line on stderr."""
    try:
        # Without standalone mode, typer returns exit codes (typer.Exit, Ctrl-C -> 130) instead
        # of raising them; turn them into the process's exit status.
        code = app(args=argv, standalone_mode=False, prog_name="labctl")
        if code == 130:  # typer's exit code for any KeyboardInterrupt
            _stopped(last_stop() or StopRequested(signal.SIGINT))
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort as exc:  # click's answer to a KeyboardInterrupt, chained to it
        cause = exc.__cause__ or exc.__context__
        _stopped(cause if isinstance(cause, StopRequested) else StopRequested(signal.SIGINT))
    except UsageError as exc:
        cmd = f" {exc.ctx.command_path.split(' ', 1)[1]}" if exc.ctx and " " in \
            exc.ctx.command_path else ""
        _say(exc.format_message(), f"labctl{cmd}")
        sys.exit(2)
    except ClickException as exc:
        _say(exc.format_message())
        sys.exit(exc.exit_code)
    except _loaded("labctl.protocol.errors:ProtocolError") as exc:
        for e in exc.errors:
            err.print(str(e), markup=False, soft_wrap=True)
        sys.exit(2)
    except UserError as exc:
        _say(exc)
        sys.exit(2)
    except _loaded("labctl.notify:NotificationURLError",
                   "labctl.recording.history:CellHistoryConflict") as exc:
        _say(exc)
        sys.exit(2)
    except (Failure, *_loaded("labctl.recording.database:DatabaseError",
                              "labctl.launch:LaunchError", "labctl.stations.connect:StationError",
                              "labctl.engine.runner:RunFailure")) as exc:
        _say(exc)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        _stopped(exc if isinstance(exc, StopRequested) else StopRequested(signal.SIGINT))
    except OSError as exc:
        _say(exc)
        sys.exit(1)
    except Exception as exc:  # a bug, not the operator's input: still one line, no traceback
        if os.environ.get("LABCTL_DEBUG"):
            raise
        _say(f"internal error: {type(exc).__name__}: {exc} (LABCTL_DEBUG=1 shows where)")
        sys.exit(1)


def _loaded(*names: str) -> tuple[type[BaseException], ...]:
    """The exception classes `module:Class` whose modules are imported, for an except clause.

    An exception can only have been raised by code whose module was imported, so the classes of
    modules never loaded need not be caught; importing them just to catch them (the engine,
    pint, the launcher) cost read-only commands most of their start-up time.
    """
    found = []
    for name in names:
        module, _, cls = name.partition(":")
        if module in sys.modules:
            found.append(getattr(sys.modules[module], cls))
    return tuple(found)


def _say(message: object, prefix: str = "labctl") -> None:
    """One line on stderr: credentials in URLs masked, control characters escaped, no markup."""
    from labctl.cli.text import escape_control, mask_credentials

    first = str(message).strip().splitlines()[0] if str(message).strip() else ""
    err.print(f"{prefix}: {escape_control(mask_credentials(first))}", markup=False,
              soft_wrap=True)


def _stopped(stop: StopRequested) -> None:
    """One line for a stop signal, and its exit status, at once.

    Everything that matters is done when this runs (channels off, runs recorded, the journal
    closed), so the interpreter's own teardown (seconds on a loaded machine, unbounded with a
    stuck library thread) is skipped: a service manager gets its exit promptly.
    """
    err.print(f"labctl: {stop}; every channel was switched off first and the runs recorded as "
              "aborted", markup=False, soft_wrap=True)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(stop.exit_status)
