"""A small pool of PocketSphinx decoder processes shared by every PocketsphinxStt in this process.

Why processes: PocketSphinx's Python binding holds the GIL while it builds a decoder (~25 ms) and while it
decodes (stalls up to ~35 ms), so on threads it blocks the worker's event loop, which paces 20 ms audio
frames for every call. In a child process that time is only the child's.

Shape: each stream is pinned to one process (the least loaded when it opens), which keeps that stream's
decoder across its turns. The event loop never blocks on a pipe: requests go into a queue drained by a
writer thread, and a reader thread per process resolves the waiting futures with
`loop.call_soon_threadsafe`. A stream has at most one request outstanding, so replies match by stream id.

Size: min(cpu_count, 4) processes by default (AUTOSPEAK_STT_PROCESSES overrides). Each holds several calls'
decoders (each ~tens of MB, most of it the acoustic model), so more processes than cores would only add
memory: decoding is CPU-bound and a process per call would multiply the interpreter and spares per call.
Four is the cap because one process decodes several calls in real time and the worker process itself
needs a core for its event loop.

Failure: a process that dies fails its streams' pending and later requests with ProviderError (the call
loop apologises) and is replaced; processes get EOF on stdin when this process exits or dies, and are
reaped at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cells.providers.base import ProviderError
from cells.providers.stt.decoder_process import CLOSE, ERROR, FEED, FINISH, HEADER, OPEN, RESULT, WARM

PROVIDER = "pocketsphinx"
_SCRIPT = Path(__file__).with_name("decoder_process.py")
_WRITE_BATCH = 1 << 16  # bytes gathered into one write when requests queue up
_PROVEN_S = 2.0  # a process that lived this long started fine, so its death is not a broken installation
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[tuple[int, bytes]]"]


def default_size() -> int:
    configured = os.environ.get("AUTOSPEAK_STT_PROCESSES")
    if configured:
        return max(1, int(configured))
    return max(1, min(os.cpu_count() or 1, 4))


def _settle(future: asyncio.Future[tuple[int, bytes]], value: tuple[int, bytes] | BaseException) -> None:
    if future.done():  # the stream was cancelled while its request was in flight
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


class DecoderProcess:
    """One child process and the two threads that talk to it."""

    def __init__(self, on_exit: Callable[[DecoderProcess], None]) -> None:
        # Run as a script, not `-m`, so that the child imports only pocketsphinx and the standard library.
        self.proc = subprocess.Popen([sys.executable, str(_SCRIPT)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, bufsize=0, close_fds=True)
        self.pid = self.proc.pid
        self.streams = 0  # streams pinned here, for least-loaded placement
        self.started = time.monotonic()
        self.answered = False  # it has replied at least once, so it is worth replacing when it dies
        self.alive = True
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._waiting: dict[int, _Waiter] = {}
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        threading.Thread(target=self._write_loop, name=f"stt-writer-{self.pid}", daemon=True).start()
        threading.Thread(target=self._read_loop, name=f"stt-reader-{self.pid}", daemon=True).start()

    async def request(self, stream: int, op: int, payload: bytes = b"") -> tuple[int, bytes]:
        """Sends one request and waits for its reply without blocking the loop. Raises ProviderError."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        with self._lock:
            if not self.alive:
                raise self._gone()
            self._waiting[stream] = (loop, future)
        self._outbox.put(HEADER.pack(len(payload), stream, op) + payload)
        kind, reply = await future
        if kind == ERROR:
            raise ProviderError(f"PocketSphinx decoder failed: {reply.decode(errors='replace')}",
                                provider=PROVIDER)
        return kind, reply

    def send(self, stream: int, op: int, payload: bytes = b"") -> None:
        """A request without a reply (CLOSE); safe from any thread, dropped if the process is gone."""
        if self.alive:
            self._outbox.put(HEADER.pack(len(payload), stream, op) + payload)

    def stop(self, timeout: float) -> None:
        """Closes the child's stdin (it exits on EOF), then kills it if it has not gone within `timeout`."""
        self._outbox.put(None)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _gone(self) -> ProviderError:
        code = self.proc.poll()
        return ProviderError(f"PocketSphinx decoder process {self.pid} exited (code {code})",
                             provider=PROVIDER)

    def _write_loop(self) -> None:
        assert self.proc.stdin is not None
        pipe = self.proc.stdin
        try:
            while True:
                item = self._outbox.get()
                if item is None:
                    break
                batch = bytearray(item)
                while len(batch) < _WRITE_BATCH:  # requests of several streams in one syscall
                    try:
                        more = self._outbox.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._outbox.put(None)
                        break
                    batch += more
                view = memoryview(batch)
                while view:
                    view = view[pipe.write(view) or 0:]
        except OSError:  # broken pipe: the child died; the reader reports it
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def _read_loop(self) -> None:
        assert self.proc.stdout is not None
        pipe = self.proc.stdout
        try:
            while True:
                header = _read_exact(pipe, HEADER.size)
                if header is None:
                    break
                length, stream, op = HEADER.unpack(header)
                payload = _read_exact(pipe, length) if length else b""
                if payload is None:
                    break
                self.answered = True
                with self._lock:
                    waiter = self._waiting.pop(stream, None)
                if waiter is not None:
                    _resolve(waiter, (op, payload))
        except OSError:
            pass
        with self._lock:
            self.alive = False
            waiters, self._waiting = list(self._waiting.values()), {}
        self.proc.wait()
        for waiter in waiters:
            _resolve(waiter, self._gone())
        self._on_exit(self)


def _read_exact(pipe: Any, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = pipe.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _resolve(waiter: _Waiter, value: tuple[int, bytes] | BaseException) -> None:
    loop, future = waiter
    try:
        loop.call_soon_threadsafe(_settle, future, value)
    except RuntimeError:  # that event loop has been closed; nobody is waiting any more
        pass


class DecoderStream:
    """One stream's handle: pinned to one process for its whole life."""

    def __init__(self, pool: DecoderPool, process: DecoderProcess, stream: int) -> None:
        self._pool, self._process, self._id = pool, process, stream
        self._closed = False

    async def feed(self, pcm: bytes) -> list[Any] | None:
        op, reply = await self._process.request(self._id, FEED, pcm)
        return json.loads(reply) if op == RESULT else None

    async def finish(self) -> list[Any]:
        _, reply = await self._process.request(self._id, FINISH)
        return json.loads(reply)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._process.send(self._id, CLOSE)
            self._pool.release(self._process)

    @property
    def pid(self) -> int:
        return self._process.pid


class DecoderPool:
    def __init__(self, size: int | None = None) -> None:
        self.size = size or default_size()
        self._lock = threading.Lock()
        self._processes: list[DecoderProcess] = []
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._processes if p.alive]

    def _ensure(self) -> list[DecoderProcess]:
        """Starts missing processes (at first use, or when one died before ever answering)."""
        with self._lock:
            if self._closed:
                raise ProviderError("PocketSphinx decoder pool is closed", provider=PROVIDER)
            self._processes = [p for p in self._processes if p.alive]
            while len(self._processes) < self.size:
                self._processes.append(DecoderProcess(self._exited))
            return list(self._processes)

    def _exited(self, process: DecoderProcess) -> None:
        """Called on the dead process's reader thread: replace it at once if it had been working.

        A process that died at once without answering anything is left for the next stream to restart,
        so a broken installation does not turn into a respawn loop.
        """
        proven = process.answered or time.monotonic() - process.started > _PROVEN_S
        with self._lock:
            if process in self._processes:
                self._processes.remove(process)
            if self._closed or not proven or len(self._processes) >= self.size:
                return
            try:
                self._processes.append(DecoderProcess(self._exited))
            except OSError:
                pass

    async def open(self, spec: dict[str, Any]) -> DecoderStream:
        payload = json.dumps(spec).encode()
        for attempt in (1, 2):
            process = min(self._ensure(), key=lambda p: p.streams)
            stream = next(self._ids)
            with self._lock:
                process.streams += 1
            handle = DecoderStream(self, process, stream)
            try:
                await process.request(stream, OPEN, payload)
                return handle
            except ProviderError:
                handle.close()
                # A process that died before its reader noticed was still on the list: a new stream
                # (nothing decoded yet, nothing lost) goes to another, once.
                if attempt == 2 or process.proc.poll() is None:
                    raise
            except BaseException:
                handle.close()
                raise
        raise AssertionError("unreachable")

    def release(self, process: DecoderProcess) -> None:
        with self._lock:
            process.streams -= 1

    async def warm(self, spec: dict[str, Any]) -> None:
        """Every process builds `spec["spares"]` decoders for `spec` ahead of calls."""
        payload = json.dumps(spec).encode()
        await asyncio.gather(*(p.request(next(self._ids), WARM, payload) for p in self._ensure()))

    def close(self, timeout: float = 2.0) -> None:
        with self._lock:
            self._closed = True
            processes, self._processes = self._processes, []
        deadline = time.monotonic() + timeout
        for process in processes:
            process.stop(max(0.0, deadline - time.monotonic()))


_SHARED: DecoderPool | None = None
_SHARED_LOCK = threading.Lock()


def shared_pool() -> DecoderPool:
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = DecoderPool()
        return _SHARED


def _close_shared() -> None:
    if _SHARED is not None:
        _SHARED.close()


def _forget_in_fork_child() -> None:
    # A forked child shares the parent's pipes but not its threads; it must start its own pool.
    global _SHARED, _SHARED_LOCK
    _SHARED, _SHARED_LOCK = None, threading.Lock()


atexit.register(_close_shared)
os.register_at_fork(after_in_child=_forget_in_fork_child)
