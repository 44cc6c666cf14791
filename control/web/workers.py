"""The region's workers' load as their slot answers last reported it (worker id, active, capacity).

The cell asks the workers for a slot on every incoming call and each answer carries the worker's load,
so the cell learns it without polling; between calls the figures are as of the last answer, and the
dashboard says when that was. Worker ids and counts only: no tenant data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

from quart import Quart

WORKERS_KEY: Final = "autospeak.web.workers"
MAX_WORKERS: Final = 256  # a bound on what a misbehaving worker population can make the cell keep


@dataclass(frozen=True, slots=True)
class WorkerSeen:
    worker_id: str
    active: int
    capacity: int
    seen: float


class WorkerLoad:
    def __init__(self) -> None:
        self._workers: dict[str, WorkerSeen] = {}

    def record(self, reply: dict[str, Any] | None, now: float | None = None) -> None:
        """Note a slot answer's load; answers without a usable worker id or counts are ignored."""
        if not isinstance(reply, dict):
            return
        worker, active, capacity = reply.get("worker_id"), reply.get("active"), reply.get("capacity")
        counts = all(isinstance(v, int) and not isinstance(v, bool) for v in (active, capacity))
        if not (isinstance(worker, str) and 0 < len(worker) <= 200 and counts):
            return
        if worker not in self._workers and len(self._workers) >= MAX_WORKERS:
            oldest = min(self._workers.values(), key=lambda w: w.seen)
            del self._workers[oldest.worker_id]
        self._workers[worker] = WorkerSeen(worker, active, capacity, time.time() if now is None else now)

    def snapshot(self) -> list[dict[str, Any]]:
        return [{"worker": w.worker_id, "active": w.active, "capacity": w.capacity,
                 "load_pct": round(100 * w.active / w.capacity, 1) if w.capacity > 0 else None,
                 "seen": w.seen} for w in sorted(self._workers.values(), key=lambda w: w.worker_id)]


def worker_load(app: Quart) -> WorkerLoad:
    return app.extensions[WORKERS_KEY]
