"""Clients of a simulated bench that runs in its own process (`labctl_drivers.sim.server`).

`RemoteEClib` is an `EClib` whose calls go over TCP to the bench's simulated SP-300: the real
SP-300 adapter runs on top of it unchanged, exactly as it runs on BioLogic's DLL. Because the
simulated instrument lives in the other process, it keeps running when labctl is killed, and a
new labctl that connects sees its channels as they are — which is what crash-safety tests need.
`RemoteOperator` turns a simulated frame's screw there (the simulated operator).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from labctl_drivers.biologic.eclib import (
    ChannelInfo,
    CurrentValues,
    DataBuffer,
    DeviceInfo,
    EccParam,
    EClibError,
)
from labctl_drivers.errors import GarbledReply, TransportError
from labctl_drivers.sim.wire import MAX_LINE_BYTES, WireError, decode, dumps, encode, loads

#: DLL code reported when the bench process cannot be reached (ERR_COMM_CONNECTIONFAILED).
CONNECTION_FAILED = -201


def parse_tcp_url(url: str) -> tuple[str, int, str]:
    """(host, port, instrument) of ``tcp://HOST:PORT[/INSTRUMENT]`` (instrument "" when the
    URL names none); ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        raise ValueError(f"expected tcp://HOST:PORT[/INSTRUMENT], got {url!r}")
    return parts.hostname, parts.port, parts.path.strip("/")


class BenchConnection:
    """One TCP connection to a bench server; one request at a time (the DLL serialises too)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url
        self.host, self.port, _ = parse_tcp_url(url)
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._lock = threading.Lock()
        self._next_id = 0

    def _connect(self) -> None:
        try:
            self._sock = socket.create_connection((self.host, self.port), self.timeout_s)
        except OSError as exc:
            raise TransportError(f"simulated bench at {self.url} unreachable: {exc}") from None
        self._sock.settimeout(self.timeout_s)
        self._reader = self._sock.makefile("rb")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._reader.close()
                self._sock.close()
                self._sock = self._reader = None

    def call(self, target: str, call: str, *args: Any) -> Any:
        """Send one request and wait for its reply; EClibError and transport faults as raised
        by the bench (a broken connection is reopened on the next call)."""
        with self._lock:
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            self._next_id += 1
            msg_id = self._next_id
            try:
                self._sock.sendall(dumps({"id": msg_id, "target": target, "call": call,
                                          "args": encode(list(args))}))
                line = self._reader.readline(MAX_LINE_BYTES + 1)
            except OSError as exc:
                self._drop()
                raise TransportError(f"simulated bench at {self.url}: {exc}") from None
            if not line:
                self._drop()
                raise TransportError(f"simulated bench at {self.url} closed the connection")
            try:
                reply = loads(line)
                if reply.get("id") != msg_id:
                    raise WireError(f"reply {reply.get('id')} to request {msg_id}")
                if "error" in reply:
                    err = reply["error"]
                    if "code" in err:
                        raise EClibError(int(err["code"]), str(err.get("function", call)))
                    raise TransportError(f"simulated bench: {err.get('message', err)}")
                return decode(reply.get("ok"))
            except WireError as exc:
                self._drop()
                raise GarbledReply(f"simulated bench at {self.url}: {exc}") from None

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._reader.close()
                self._sock.close()
            finally:
                self._sock = self._reader = None


class RemoteEClib:
    """The `EClib` of one simulated SP-300 in a bench process (see module docstring)."""

    simulated = True

    def __init__(self, url: str, *, instrument: str, timeout_s: float = 10.0) -> None:
        """`url` is ``tcp://HOST:PORT/NAME``, NAME the SP-300's name on the bench (default:
        `instrument`, its name in the station)."""
        self.instrument = parse_tcp_url(url)[2] or instrument
        self._conn = BenchConnection(url, timeout_s)

    def _call(self, call: str, *args: Any) -> Any:
        try:
            return self._conn.call(self.instrument, call, *args)
        except TransportError as exc:
            # to the adapter this is what the DLL says when the link is gone
            raise EClibError(CONNECTION_FAILED, f"{call} ({exc})") from None

    def connect(self, address: str, timeout_s: int) -> tuple[int, DeviceInfo]:
        idn, info = self._call("connect", address, timeout_s)
        return int(idn), info

    def disconnect(self, idn: int) -> None:
        self._call("disconnect", idn)
        self._conn.close()

    def test_connection(self, idn: int) -> bool:
        return bool(self._call("test_connection", idn))

    def channels_plugged(self, idn: int) -> list[int]:
        return [int(c) for c in self._call("channels_plugged", idn)]

    def channel_info(self, idn: int, channel: int) -> ChannelInfo:
        info: ChannelInfo = self._call("channel_info", idn, channel)
        return info

    def load_firmware(self, idn: int, channels: Sequence[int], force: bool = False) -> list[int]:
        return [int(c) for c in self._call("load_firmware", idn, list(channels), force)]

    def load_technique(self, idn: int, channel: int, ecc_file: str, params: Sequence[EccParam],
                       first: bool, last: bool) -> None:
        self._call("load_technique", idn, channel, ecc_file, list(params), first, last)

    def start_channel(self, idn: int, channel: int) -> None:
        self._call("start_channel", idn, channel)

    def stop_channel(self, idn: int, channel: int) -> None:
        self._call("stop_channel", idn, channel)

    def current_values(self, idn: int, channel: int) -> CurrentValues:
        values: CurrentValues = self._call("current_values", idn, channel)
        return values

    def get_data(self, idn: int, channel: int) -> DataBuffer:
        buf: DataBuffer = self._call("get_data", idn, channel)
        return buf


class RemoteOperator:
    """The simulated operator of a bench process: turns one frame's screw to a force."""

    def __init__(self, url: str, frame: str, timeout_s: float = 10.0) -> None:
        self.frame = parse_tcp_url(url)[2] or frame
        self._conn = BenchConnection(url, timeout_s)

    def __call__(self, force_N: float) -> None:
        self._conn.call(self.frame, "turn_screw_to", float(force_N))
