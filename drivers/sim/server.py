"""A simulated bench in its own process, reached over TCP.

The simulated instruments then outlive the labctl that drives them, like real ones: kill labctl
with SIGKILL in the middle of a step and the simulated SP-300 goes on with its technique (and
its cell goes on changing) on the bench's wall clock; a new labctl connects and sees the channel
still on. That is what crash-safety and resume tests need, and what an in-process simulation
cannot give.

Served: each simulated SP-300's EClib calls (`RemoteEClib` is the client the SP-300 adapter
runs on), each frame's simulated operator (`turn_screw_to`), and each frame's Mark-10 gauge on
its own TCP port in the gauge's own GCL2 bytes (the real driver connects with `socket://`).
Requests are JSON lines (`labctl_drivers.sim.wire`); every call is serialised by one lock, as
the EClib DLL serialises its calls.
"""

from __future__ import annotations

import logging
import socketserver
import threading
from collections.abc import Callable
from typing import Any

from labctl_drivers.biologic.eclib import EClibError
from labctl_drivers.errors import InstrumentError
from labctl_drivers.sim.bench import SimulatedBench
from labctl_drivers.sim.wire import MAX_LINE_BYTES, WireError, decode, dumps, encode, loads

log = logging.getLogger(__name__)

#: The EClib calls a client may make; nothing else of the simulated instrument is reachable.
ECLIB_CALLS = frozenset({
    "connect", "disconnect", "test_connection", "channels_plugged", "channel_info",
    "load_firmware", "load_technique", "start_channel", "stop_channel", "current_values",
    "get_data",
    "command_log",  # the simulated instrument's own record of the calls it received
})


class BenchServer:
    """Serve `bench` on ``tcp://host:port`` (port 0: any free port; see `url`)."""

    def __init__(self, bench: SimulatedBench, host: str = "127.0.0.1", port: int = 0) -> None:
        self.bench = bench
        self._lock = threading.Lock()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    try:
                        line = self.rfile.readline(MAX_LINE_BYTES + 1)
                    except OSError:
                        return
                    if not line:
                        return
                    self.wfile.write(dumps(server.answer(line)))

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"tcp://{host}:{port}"

    def answer(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line (never raises: faults go back as errors)."""
        msg_id: Any = None
        try:
            msg = loads(line)
            msg_id = msg.get("id")
            target, call = str(msg.get("target")), str(msg.get("call"))
            args = decode(msg.get("args", []))
            if not isinstance(args, list):
                raise WireError("args must be a list")
            with self._lock:  # due cell faults are applied by each simulated EClib's own hook
                result = self._resolve(target, call)(*args)
            return {"id": msg_id, "ok": encode(result)}
        except EClibError as exc:
            return {"id": msg_id, "error": {"code": exc.code, "function": exc.function}}
        except (WireError, InstrumentError, TypeError, ValueError, KeyError) as exc:
            return {"id": msg_id, "error": {"message": f"{type(exc).__name__}: {exc}"}}

    def _resolve(self, target: str, call: str) -> Callable[..., Any]:
        if call == "turn_screw_to":
            return self.bench.operator(target)
        if call not in ECLIB_CALLS:
            raise WireError(f"unknown call {call!r}")
        return getattr(self.bench.sp300(target), call)  # type: ignore[no-any-return]

    def start(self) -> BenchServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="bench-server",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
