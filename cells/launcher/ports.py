"""Free loopback ports for servers that this process starts but does not bind itself.

A port from `bind(("127.0.0.1", 0))` comes from the kernel's ephemeral range, the same range every
outgoing connection takes its source port from. Between closing our probe socket and the child
binding the port, any client connection on the machine (a NATS gateway dialling out, a test's
HTTP client) may take it: the child then dies with "address already in use". So ports are drawn
at random from below the ephemeral range, where the kernel never assigns source ports.
"""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

HOST = "127.0.0.1"
_LOWEST = 20_000  # leaves the well-known and commonly configured service ports alone
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default, and below the IANA dynamic range other systems use


def free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct ports on `host` that nothing is bound to now and no outgoing connection will take."""
    high = _ephemeral_low()
    if high - _LOWEST < count * 4:
        # A machine whose ephemeral range starts low (a common tuning: 1024-65535) has no such
        # ports: take the kernel's choice, and the start-up retry covers the rare collision.
        return _kernel_ports(count, host)
    rng = random.SystemRandom()  # independent draws in parallel test processes
    chosen: list[int] = []
    # Hold every probe socket until all are chosen so the same port is never returned twice.
    with contextlib.ExitStack() as stack:
        for port in rng.sample(range(_LOWEST, high), min(high - _LOWEST, count * 50)):
            sock = stack.enter_context(socket.socket())
            try:
                sock.bind((host, port))
            except OSError:
                continue
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"could not find {count} free ports on {host}")


def _kernel_ports(count: int, host: str) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]


def free_port(host: str = HOST) -> int:
    return free_ports(1, host)[0]
