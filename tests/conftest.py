"""Test ordering for the parallel run: the files with the longest real-time calls start first.

`tests/run_all.sh` runs two processes with `--dist loadfile` (one file at a time per process). A long
file collected last leaves one process working alone at the end; started first, the short files fill
in beside it. The list is a hint measured from `--durations`; a file missing from it only runs later.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HEAVY_FIRST = (
    "test_cells_e2e.py",
    "test_cell_protection.py",
    "test_call_e2e.py",
    "test_agent_records_calls.py",
    "test_eval_smoke.py",
    "test_verticals_calls.py",
    "test_autospeak_up.py",
    "test_knowledge_call.py",
    "test_call_loadtest.py",
    "test_twilio_strict_peer.py",
    "test_worker_resume.py",
    "test_observability_cell.py",
    "test_web_console_call.py",
    "test_observability_worker.py",
    "test_worker_shutdown.py",
    "test_transfer_handoff.py",
    "test_control_api_schemathesis.py",
    "test_call_guard.py",
    "test_pcm_transport.py",
    "test_web_console.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))  # stable: keeps the rest
