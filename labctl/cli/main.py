"""The console entry point: run the app and turn expected errors into one line on stderr.

Exit status 2 means "your input is wrong"; 1 means "could not be done"; 130 means Ctrl-C.
"""

from __future__ import annotations

import sys

import typer

from labctl.cli.app import Failure, UserError, app, err

try:  # recent typer vendors click; older releases use the click package
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException, UsageError


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and turn expected errors into one line on stderr."""
    from labctl.engine.runner import RunFailure
    from labctl.launch import LaunchError
    from labctl.notify import NotificationURLError
    from labctl.protocol import ProtocolError
    from labctl.recording.database import DatabaseError
    from labctl.stations import StationError

    try:
        # Without standalone mode, typer returns exit codes (typer.Exit, Ctrl-C -> 130) instead
        # of raising them; turn them into the process's exit status.
        code = app(args=argv, standalone_mode=False, prog_name="labctl")
        if code == 130:
            err.print("labctl: interrupted (Ctrl-C); channels were switched off and the runs "
                      "recorded as aborted")
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("labctl: interrupted")
        sys.exit(130)
    except UsageError as exc:
        cmd = f" {exc.ctx.command_path.split(' ', 1)[1]}" if exc.ctx and " " in \
            exc.ctx.command_path else ""
        err.print(f"labctl{cmd}: {exc.format_message()}", markup=False, soft_wrap=True)
        sys.exit(2)
    except ClickException as exc:
        err.print(f"labctl: {exc.format_message()}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except ProtocolError as exc:
        for e in exc.errors:
            err.print(str(e), markup=False, soft_wrap=True)
        sys.exit(2)
    except UserError as exc:
        err.print(f"labctl: {exc}", markup=False, soft_wrap=True)
        sys.exit(2)
    except NotificationURLError as exc:
        err.print(f"labctl: {exc}", markup=False, soft_wrap=True)
        sys.exit(2)
    except (DatabaseError, LaunchError, StationError, RunFailure, Failure) as exc:
        err.print(f"labctl: {exc}", markup=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("labctl: interrupted (Ctrl-C); channels were switched off and the runs "
                  "recorded as aborted")
        sys.exit(130)
    except OSError as exc:
        err.print(f"labctl: {exc}", markup=False, soft_wrap=True)
        sys.exit(1)
