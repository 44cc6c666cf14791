"""The embedded NATS supercluster on real nats-server processes (one per region)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import KeyWrongLastSequenceError, ServiceUnavailableError

from cells.contract.jetstream import (
    call_stream_name,
    call_subject,
    ensure_call_state_bucket,
    ensure_call_stream,
    publish_event,
)
from cells.launcher import NatsStartError, NatsSupercluster, nats_server_binary
from cells.launcher.ports import free_ports
from regions import UnknownRegionError

T = TypeVar("T")
REGIONS = ("eu", "in", "us")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsSupercluster]:
    sc = NatsSupercluster(tmp_path_factory.mktemp("nats"), REGIONS)
    sc.start()  # stops whatever it started if it fails
    try:
        yield sc
    finally:
        sc.stop()


def run(coro: Awaitable[T], timeout: float = 20.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[Client]:
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        yield nc
    finally:
        await nc.close()


async def eventually(probe: Callable[[], Awaitable[T]], retry_on: tuple[type[Exception], ...]) -> T:
    """Retry while a condition is still propagating (interest across gateways, a stream after restart).

    Callers bound the total time with run()'s timeout, so a condition that never holds still fails.
    """
    while True:
        try:
            return await probe()
        except retry_on:
            await asyncio.sleep(0.05)


def test_binary_comes_from_the_wheel() -> None:
    binary = nats_server_binary()
    assert binary.is_file() and os.access(binary, os.X_OK)


def test_supercluster_forms_with_every_gateway(cluster: NatsSupercluster) -> None:
    for region in REGIONS:
        outbound, inbound = cluster.gateways(region)
        others = set(REGIONS) - {region}
        assert outbound == others and inbound == others, region
        varz = cluster.monitor(region, "varz")
        assert varz["server_name"] == f"autospeak-{region}"
        assert varz["cluster"]["name"] == region
        assert f"region:{region}" in varz["tags"]
        meta = cluster.monitor(region, "jsz")["meta_cluster"]
        assert meta["cluster_size"] == len(REGIONS) and meta["leader"]


def test_stream_lives_in_its_region_whichever_server_creates_it(cluster: NatsSupercluster) -> None:
    async def main() -> None:
        async with connect(cluster.url("us")) as nc:
            js = nc.jetstream()
            info = await ensure_call_stream(js, "eu")
            assert info.config.name == "CALLS_EU" and info.config.subjects == ["eu.calls.>"]
            assert info.cluster is not None and info.cluster.name == "eu"
            assert info.cluster.leader == "autospeak-eu"
            assert info.config.duplicate_window == pytest.approx(120.0)
            again = await ensure_call_stream(js, "eu")  # idempotent
            assert again.cluster is not None and again.cluster.name == "eu"
        async with connect(cluster.url("eu")) as nc:
            tagged = await ensure_call_stream(nc.jetstream(), "in", by="tags")
            assert tagged.cluster is not None and tagged.cluster.name == "in"

    run(main())


def test_same_msg_id_is_stored_once(cluster: NatsSupercluster) -> None:
    async def main() -> None:
        # Published from another region's server, so the event also crosses a gateway.
        async with connect(cluster.url("us")) as nc:
            js = nc.jetstream()
            await ensure_call_stream(js, "eu")
            subject = call_subject("eu", "tenant_dedup", "call_1", "turn")
            first = await publish_event(js, subject, b"turn 1", msg_id="call_1:turn:1")
            second = await publish_event(js, subject, b"turn 1", msg_id="call_1:turn:1")
            assert not first.duplicate and second.duplicate and second.seq == first.seq
            await publish_event(js, subject, b"turn 2", msg_id="call_1:turn:2")
            info = await js.stream_info(call_stream_name("eu"), subjects_filter=subject)
            assert info.state.subjects == {subject: 2}

    run(main())


def test_queue_group_in_one_region_answers_a_client_of_another_once(cluster: NatsSupercluster) -> None:
    handled: Counter[str] = Counter()

    async def main() -> None:
        async with connect(cluster.url("eu")) as workers, connect(cluster.url("us")) as caller:
            for worker in ("w1", "w2", "w3"):

                async def answer(msg: Msg, worker: str = worker) -> None:
                    handled[worker] += 1
                    await msg.respond(f"{worker}:{msg.data.decode()}".encode())

                await workers.subscribe("eu.assign", queue="eu-workers", cb=answer)
            await workers.flush()
            # Queue interest reaches the us server through the gateway shortly after the flush.
            await eventually(
                lambda: caller.request("eu.assign", b"warmup", timeout=0.5), (NoRespondersError,)
            )
            handled.clear()
            replies = [await caller.request("eu.assign", f"call{i}".encode(), timeout=2) for i in range(20)]
            for i, reply in enumerate(replies):
                worker, _, payload = reply.data.decode().partition(":")
                assert worker in {"w1", "w2", "w3"} and payload == f"call{i}"
            # A second delivery of any request would land at about the same time as the first; give
            # it time to arrive, then make sure the workers' connection has processed all input.
            await asyncio.sleep(0.2)
            await workers.flush()

    run(main())
    assert sum(handled.values()) == 20  # each request handled by exactly one member


def test_request_without_responders_fails_fast(cluster: NatsSupercluster) -> None:
    async def main() -> None:
        async with connect(cluster.url("in")) as nc:
            await nc.request("in.assign.nobody", b"", timeout=2)

    with pytest.raises(NoRespondersError):
        run(main())


def test_kv_bucket_is_regional_and_shared_across_servers(cluster: NatsSupercluster) -> None:
    async def main() -> None:
        async with connect(cluster.url("in")) as local, connect(cluster.url("us")) as remote:
            await ensure_call_state_bucket(remote.jetstream(), "in")  # created through another region
            info = await local.jetstream().stream_info("KV_call_state_in")
            assert info.cluster is not None and info.cluster.name == "in"
            kv = await local.jetstream().key_value("call_state_in")  # a worker of the region
            rev1 = await kv.put("call_42", b'{"turns":1}')
            rev2 = await kv.put("call_42", b'{"turns":2}')
            assert rev2 > rev1
            # Read from another region's server once the bucket's interest has crossed the gateway.
            far = await remote.jetstream().key_value("call_state_in")
            entry = await eventually(lambda: far.get("call_42"), (NoRespondersError,))
            assert entry.value == b'{"turns":2}' and entry.revision == rev2
            # A compare-and-set on a stale revision (a second worker's lease) must fail.
            with pytest.raises(KeyWrongLastSequenceError):
                await kv.update("call_42", b'{"turns":3}', last=rev1)
            assert await kv.update("call_42", b'{"turns":3}', last=rev2) > rev2

    run(main())


def test_restarted_server_keeps_its_jetstream_data(cluster: NatsSupercluster) -> None:
    subject = call_subject("eu", "tenant_restart", "call_7", "transcript")

    async def publish() -> list[int]:
        async with connect(cluster.url("eu")) as nc:
            js = nc.jetstream()
            await ensure_call_stream(js, "eu")
            acks = [
                await publish_event(js, subject, f"line {i}".encode(), msg_id=f"c7:{i}") for i in range(5)
            ]
            return [ack.seq for ack in acks]

    async def read(seqs: list[int]) -> list[bytes]:
        async with connect(cluster.url("us")) as nc:
            js = nc.jetstream()
            info = await eventually(
                lambda: js.stream_info(call_stream_name("eu"), subjects_filter=subject),
                (ServiceUnavailableError, NatsTimeout),
            )
            assert info.state.subjects == {subject: 5}
            return [(await js.get_msg(call_stream_name("eu"), seq)).data or b"" for seq in seqs]

    seqs = run(publish())
    pid_before = cluster.pid("eu")
    cluster.restart("eu")
    assert cluster.pid("eu") not in (None, pid_before)
    assert run(read(seqs)) == [f"line {i}".encode() for i in range(5)]


def test_whole_supercluster_restart_keeps_streams_and_buckets(cluster: NatsSupercluster) -> None:
    subject = call_subject("us", "tenant_full", "call_9", "disposition")

    async def write() -> None:
        async with connect(cluster.url("us")) as nc:
            js = nc.jetstream()
            await ensure_call_stream(js, "us")
            await publish_event(js, subject, b"booked", msg_id="c9:disposition")
            kv = await ensure_call_state_bucket(js, "us")
            await kv.put("call_9", b"lease:w2")

    async def read() -> tuple[int, bytes | None]:
        async with connect(cluster.url("us")) as nc:
            js = nc.jetstream()
            info = await js.stream_info(call_stream_name("us"), subjects_filter=subject)
            entry = await (await js.key_value("call_state_us")).get("call_9")
            return (info.state.subjects or {}).get(subject, 0), entry.value

    run(write())
    cluster.stop()
    assert all(cluster.pid(r) is None for r in REGIONS)
    cluster.start()
    assert run(read()) == (1, b"lease:w2")


def test_failed_start_raises_with_the_log_and_leaves_nothing_running(tmp_path: Path) -> None:
    sc = NatsSupercluster(tmp_path, ("eu", "us"), binary="/bin/false", ready_timeout=5)
    with pytest.raises(NatsStartError, match="not running"):
        sc.start()
    assert sc.pid("eu") is None and sc.pid("us") is None


def test_regions_are_checked() -> None:
    with pytest.raises(ValueError):
        NatsSupercluster("/nonexistent", ("eu", "eu"))
    with pytest.raises(UnknownRegionError):
        NatsSupercluster("/nonexistent", ("eu", "mars"))


def test_a_first_start_that_loses_a_port_race_starts_on_other_ports(tmp_path: Path) -> None:
    sc = NatsSupercluster(tmp_path, ("eu", "us"))
    taken = sc.ports("eu").nats_gateway
    # Someone else binds the gateway port between our choice and nats-server's listen.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        sc.start()
        try:
            assert sc.ports("eu").nats_gateway != taken
            assert "address already in use" in sc.log_path("eu").read_text()
            assert sc.is_ready("eu") and sc.is_ready("us")
        finally:
            sc.stop()


def test_fixed_ports_are_not_moved_when_taken(tmp_path: Path) -> None:
    sc = NatsSupercluster(tmp_path, ("eu",), base_port=free_ports(1)[0] // 100 * 100, ready_timeout=5)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", sc.ports("eu").nats_client))
        squatter.listen()
        with pytest.raises(NatsStartError, match="address already in use"):
            sc.start()
    assert sc.pid("eu") is None


def test_free_ports_avoid_the_ephemeral_range_and_each_other() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = free_ports(40)
    assert len(set(ports)) == 40 and all(p < low for p in ports)
    for port in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free now, not merely chosen


def test_free_ports_on_a_machine_whose_ephemeral_range_starts_low(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cells.launcher import ports

    monkeypatch.setattr(ports, "_RANGE_FILE", tmp_path / "ip_local_port_range")
    (tmp_path / "ip_local_port_range").write_text("1024\t65535\n")
    chosen = ports.free_ports(6)
    assert len(set(chosen)) == 6 and all(p > 0 for p in chosen)
