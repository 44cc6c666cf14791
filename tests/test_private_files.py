"""What the product writes under its data directories is its service user's only (0600 files, 0700
folders), and a card number given as a patient's phone number or name never reaches the calendar."""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path

import pytest

from cells.agents.reception.calendar import Calendar, CalendarTools
from regions.objectstore import RegionStore

NOW = datetime(2026, 3, 2, 8, 30)
TENANT = "0f8fad5b-d9cb-469f-a165-70867728950e"
CARD = "4111111111111111"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def open_umask():  # type: ignore[no-untyped-def]
    old = os.umask(0o022)  # the usual default: files 0644 unless the product says otherwise
    yield
    os.umask(old)


def test_calendar_file_and_folders_are_private(tmp_path: Path) -> None:
    path = tmp_path / "store" / "agents" / "a1" / "calendar.json"
    Calendar(clock=lambda: NOW, path=path).book("John Smith", "cleaning", datetime(2026, 3, 3, 9, 30))
    assert mode(path) == 0o600
    assert mode(path.with_suffix(".json.lock")) == 0o600
    for folder in (tmp_path / "store", tmp_path / "store" / "agents", path.parent):
        assert mode(folder) == 0o700, folder


def test_recordings_are_private(tmp_path: Path) -> None:
    store = RegionStore(tmp_path / "objects", "eu")
    key = RegionStore.key(TENANT, "call-1.wav")
    store.put(key, b"RIFF....")
    assert mode(store.path(key)) == 0o600
    assert mode(store.path(key).parent) == 0o700 and mode(store.root) == 0o700


@pytest.mark.parametrize("phone", [CARD, f"{CARD}#", "4111 1111 1111 1111", "4111-1111-1111-1111"])
def test_a_card_given_as_phone_number_is_not_stored(tmp_path: Path, phone: str) -> None:
    path = tmp_path / "calendar.json"
    tools = CalendarTools(Calendar(clock=lambda: NOW, path=path))
    result = tools.create_booking("John Smith", "cleaning", "2026-03-03T09:30", phone=phone)
    assert result["ok"] and result["booking"]["phone"] is None and result["phone_refused"]
    assert "1111" not in path.read_text()


def test_a_card_in_the_name_is_masked_and_a_real_phone_number_kept(tmp_path: Path) -> None:
    path = tmp_path / "calendar.json"
    cal = Calendar(clock=lambda: NOW, path=path)
    booking = cal.book(f"John {CARD}", "cleaning", datetime(2026, 3, 3, 9, 30), phone="07700 900123")
    assert booking.name == "John [card]" and booking.phone == "07700 900123"
    assert CARD not in path.read_text() and "07700 900123" in path.read_text()
