"""Stand-in upstreams for tests and benchmarks at scale: one process answering, or hanging on, many real ports.

``python -m tests.fakes.standins --answer 100 --hang 150 --silent 150`` binds that many listening sockets on
127.0.0.1 and prints one JSON line, ``{"answer": [ports], "hang": [ports], "silent": [ports]}``, then serves until
SIGTERM or until its stdin closes (so it dies with the test that started it):

* **answer**: HTTP/1.1 with keep-alive; every request, whatever its method and path, gets ``200 {"ok":true}``;
* **hang**: accepts connections and reads what is sent, but never answers;
* **silent**: listens but never accepts: the kernel completes a handshake or two into the backlog, after that
  connection attempts themselves go unanswered.

It parses requests with httptools (the parser uvicorn uses), so pipelined and bodied requests are handled as an
HTTP server would. Run in its own process, the stand-ins take no CPU from the process under test. ``StandIns``
starts and stops one from a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools

RESPONSE = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'
REPO = Path(__file__).resolve().parents[2]


class _Answering(asyncio.Protocol):
    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_message_complete(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(RESPONSE)
            if not self._parser.should_keep_alive():
                self._transport.close()


class _Hanging(asyncio.Protocol):
    """Takes the connection and every byte sent on it, and says nothing."""

    def data_received(self, data: bytes) -> None:
        pass


def _listening(count: int, backlog: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen(backlog)
        sockets.append(sock)
    return sockets


async def _serve(answer: int, hang: int, silent: int) -> None:
    loop = asyncio.get_running_loop()
    answering, hanging, silent_ = _listening(answer, 1024), _listening(hang, 1024), _listening(silent, 1)
    servers = [await loop.create_server(_Answering, sock=s) for s in answering]
    servers += [await loop.create_server(_Hanging, sock=s) for s in hanging]
    ports = {kind: [s.getsockname()[1] for s in group] for kind, group in
             (("answer", answering), ("hang", hanging), ("silent", silent_))}  # fmt: skip
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    done = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not os.read(sys.stdin.fileno(), 1024) else None)
    await done.wait()
    for server in servers:
        server.close()
    for sock in silent_:
        sock.close()


@dataclass
class StandIns:
    """A stand-ins process started from a test or benchmark; use as a context manager."""

    answer: int = 0
    hang: int = 0
    silent: int = 0
    ports: dict[str, list[int]] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> StandIns:
        argv = [sys.executable, "-m", "tests.fakes.standins", "--answer", str(self.answer), "--hang", str(self.hang),
                "--silent", str(self.silent)]  # fmt: skip
        self._proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait(timeout=10)
            raise RuntimeError(f"stand-ins did not start (exit {self._proc.returncode})")
        self.ports = json.loads(line)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def urls(self, kind: str) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports[kind]]


def _raise_open_files() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.standins")
    for kind in ("answer", "hang", "silent"):
        parser.add_argument(f"--{kind}", type=int, default=0)
    args: Any = parser.parse_args(argv)
    _raise_open_files()
    asyncio.run(_serve(args.answer, args.hang, args.silent))


if __name__ == "__main__":
    main()
