"""The dashboard's worker load table: what the workers' slot answers say, bounded and validated."""

from __future__ import annotations

from control.web.workers import MAX_WORKERS, WorkerLoad


def test_slot_answers_keep_each_workers_latest_load() -> None:
    load = WorkerLoad()
    load.record({"accepted": True, "worker_id": "eu-w1", "active": 3, "capacity": 8}, now=10.0)
    load.record({"accepted": False, "worker_id": "eu-w2", "active": 8, "capacity": 8}, now=11.0)
    load.record({"accepted": True, "worker_id": "eu-w1", "active": 4, "capacity": 8}, now=12.0)
    assert load.snapshot() == [
        {"worker": "eu-w1", "active": 4, "capacity": 8, "load_pct": 50.0, "seen": 12.0},
        {"worker": "eu-w2", "active": 8, "capacity": 8, "load_pct": 100.0, "seen": 11.0},
    ]


def test_answers_without_usable_figures_are_ignored_and_the_table_is_bounded() -> None:
    load = WorkerLoad()
    for bad in (None, {}, {"worker_id": "w", "active": "3", "capacity": 8},
                {"worker_id": "", "active": 1, "capacity": 8},
                {"worker_id": "w", "active": True, "capacity": 8}):
        load.record(bad)  # type: ignore[arg-type]
    assert load.snapshot() == []
    for n in range(MAX_WORKERS + 5):
        load.record({"worker_id": f"w{n:04d}", "active": 0, "capacity": 0}, now=float(n))
    workers = load.snapshot()
    assert len(workers) == MAX_WORKERS and workers[0]["worker"] == "w0005"  # the oldest went first
    assert workers[0]["load_pct"] is None  # no capacity: no percentage
