"""`labctl serve`: the web dashboard (labctl.web) on uvicorn."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from labctl.cli.app import DbOption, Failure, UserError, app, err, out


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a busy port is one clear line, and port 0 (any
    free port) can be reported before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(
        help="Address to listen on; another than localhost makes the dashboard reachable "
             "from the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 8080,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="File whose first line is the operator token (else "
                             "LABCTL_WEB_TOKEN); without a token the dashboard is read-only.",
    )] = None,
) -> None:
    """Serve the web dashboard: runs, live traces and events, operator pause/resume/abort."""
    import uvicorn

    from labctl.recording.database import open_database
    from labctl.web.app import create_app
    from labctl.web.security import TOKEN_ENV, Guard, token_from

    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a TCP port (0..65535)")
    if token_file is not None and not token_file.is_file():
        raise UserError(f"--token-file {token_file}: no such file")
    token = token_from(token_file=None if token_file is None else str(token_file))
    if token_file is not None and token is None:
        raise UserError(f"--token-file {token_file} is empty")
    engine = open_database(db)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    mode = "operator actions need the token" if token else f"read-only (set {TOKEN_ENV})"
    out.print(f"labctl dashboard on http://{host}:{bound}/ ({mode}); Ctrl-C stops it",
              soft_wrap=True)
    sys.stdout.flush()  # a supervising process reads the address before anything else comes
    if not _is_loopback(host):
        err.print(f"labctl: listening on {host}: reachable from the network; use https in "
                  "front of it if the token crosses an untrusted network", soft_wrap=True)
    config = uvicorn.Config(create_app(engine, Guard(token)), log_level="warning",
                            access_log=False, timeout_graceful_shutdown=3)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: a normal stop here
        pass
    out.print("labctl dashboard stopped")
