"""The region catalogue and the residency rules (pure code, no services)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields

import pytest

from regions import (
    REGIONS,
    Allow,
    InvalidE164Error,
    Redirect,
    Refuse,
    RegionError,
    UnknownRegionError,
    UnservedNumberError,
    check_residency,
    get_region,
    home_region,
    region_for_number,
)
from regions.catalogue import all_regions, calling_code, validate_e164
from regions.residency import cell_directory

CELLS = cell_directory(
    {"eu": "https://eu.cells.example/", "in": "https://in.cells.example", "us": "http://127.0.0.1:14210"}
)


# -- catalogue ----------------------------------------------------------------------------------------


def test_catalogue_has_the_three_cells_with_distinct_names_everywhere() -> None:
    assert set(REGIONS) == {"eu", "in", "us"}
    for attr in ("code", "db_region", "nats_cluster", "bucket", "port_offset"):
        values = [getattr(r, attr) for r in all_regions()]
        assert len(set(values)) == len(values), attr
    assert get_region("eu").db_region == "europe-west1"
    assert get_region("in").db_region == "asia-south1"
    assert get_region("us").db_region == "us-east1"
    assert get_region("in").nats_tag == "region:in"


def test_unknown_region_is_an_error() -> None:
    with pytest.raises(UnknownRegionError):
        get_region("uk")
    assert issubclass(UnknownRegionError, RegionError)


def test_embedded_ports_never_collide_across_cells() -> None:
    ports = [getattr(r.ports(), f.name) for r in all_regions() for f in fields(r.ports())]
    assert len(set(ports)) == len(ports)
    eu, us = get_region("eu").ports(20000), get_region("us").ports(20000)
    assert eu.nats_client == 20000 and us.nats_client == 20000 + get_region("us").port_offset
    assert eu.api - eu.nats_client == us.api - us.nats_client


def test_calling_codes_are_prefix_free_and_claimed_once() -> None:
    codes = [c for r in all_regions() for c in r.calling_codes]
    assert len(set(codes)) == len(codes)
    for a, b in itertools.permutations(codes, 2):
        assert not b.startswith(a), (a, b)


@pytest.mark.parametrize(
    ("number", "region"),
    [
        ("+442071838750", "eu"),
        ("+33142685300", "eu"),
        ("+4930901820", "eu"),
        ("+35315550123", "eu"),
        ("+919876543210", "in"),
        ("+14155552671", "us"),
        ("+16135550123", "us"),  # Canada shares +1 with the US
    ],
)
def test_region_for_number(number: str, region: str) -> None:
    assert region_for_number(number).code == region


def test_every_catalogued_calling_code_routes_to_its_region() -> None:
    for r in all_regions():
        for code in r.calling_codes:
            number = "+" + code + "5" * (10 if code in ("1", "91") else 9)
            assert calling_code(number) == code
            assert region_for_number(number) == r


@pytest.mark.parametrize(
    "number",
    [
        "",
        "+",
        "442071838750",  # no plus
        "+44 20 7183 8750",  # separators
        "+44-20-7183-8750",
        "+0442071838750",  # leading zero
        "+4420718",  # too short
        "+4420718387501234",  # 16 digits
        "+44207183875a",
        "+14155552671\n",
        "+\uff14\uff14\uff12\uff10\uff17\uff11\uff18\uff13\uff18\uff17\uff15\uff10",  # fullwidth digits
        "+1415555267",  # NANP numbers have 10 national digits
        "+141555526712",
        "+91987654321",  # Indian numbers have 10 national digits
    ],
)
def test_malformed_numbers_are_rejected(number: str) -> None:
    with pytest.raises(InvalidE164Error):
        region_for_number(number)


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidE164Error):
        validate_e164(442071838750)  # type: ignore[arg-type]


@pytest.mark.parametrize("number", ["+81312345678", "+2348012345678", "+61291234567", "+8613812345678"])
def test_unserved_countries_raise_rather_than_default(number: str) -> None:
    with pytest.raises(UnservedNumberError):
        region_for_number(number)
    assert issubclass(UnservedNumberError, ValueError)


# -- residency ----------------------------------------------------------------------------------------


@dataclass
class Tenant:
    id: str
    region: str


def test_home_region_of_a_tenant() -> None:
    assert home_region(Tenant("t1", "in")) is REGIONS["in"]
    with pytest.raises(UnknownRegionError):
        home_region(Tenant("t2", "mars"))


def test_same_region_is_allowed() -> None:
    for code in REGIONS:
        assert check_residency(code, code, CELLS, path="/v1/agents") == Allow(REGIONS[code])


def test_cross_region_redirects_to_the_home_cell_with_path_and_query() -> None:
    decision = check_residency("eu", "in", CELLS, path="/v1/calls/c_1", query="limit=5&cursor=a%2Fb")
    assert isinstance(decision, Redirect)
    assert decision.location == "https://in.cells.example/v1/calls/c_1?limit=5&cursor=a%2Fb"
    assert decision.status == 307
    assert decision.region.code == "in"
    # A trailing slash on the base URL does not double up.
    assert check_residency("us", "eu", CELLS, path="/x").location == "https://eu.cells.example/x"


def test_cross_region_is_refused_when_redirects_are_off_or_home_cell_unknown() -> None:
    refused = check_residency("eu", "us", CELLS, redirect=False)
    assert isinstance(refused, Refuse) and refused.region.code == "us"
    unknown_cell = check_residency("eu", "us", {"eu": CELLS["eu"]})
    assert isinstance(unknown_cell, Refuse) and "us" in unknown_cell.reason


def test_unknown_regions_raise() -> None:
    with pytest.raises(UnknownRegionError):
        check_residency("eu", "apac", CELLS)
    with pytest.raises(UnknownRegionError):
        check_residency("apac", "eu", CELLS)


@pytest.mark.parametrize(
    "path", ["//evil.example/x", "/\\evil.example", "relative", "", "/a b", "/a\r\nSet-Cookie: x=1"]
)
def test_paths_that_could_retarget_or_inject_are_rejected(path: str) -> None:
    with pytest.raises(ValueError):
        check_residency("eu", "in", CELLS, path=path)


def test_query_with_control_characters_is_rejected() -> None:
    with pytest.raises(ValueError):
        check_residency("eu", "in", CELLS, path="/v1", query="a=1\r\nLocation: x")


@pytest.mark.parametrize(
    "urls",
    [
        {"eu": "eu.cells.example"},
        {"eu": "ftp://eu.cells.example"},
        {"eu": "https://eu.cells.example/?a=1"},
        {"eu": "https://eu.cells.example/#x"},
        {"apac": "https://apac.cells.example"},
    ],
)
def test_cell_directory_rejects_bad_entries(urls: dict[str, str]) -> None:
    with pytest.raises(RegionError):
        cell_directory(urls)
