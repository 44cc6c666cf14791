"""`python -m control.audit residency ...`: check that every tenant's data rests in its home region.

    python -m control.audit residency --database-url postgresql://... \\
        --nats-url eu=nats://nats-eu:4222,in=nats://nats-in:4222,us=nats://nats-us:4222 \\
        --object-store /data/objects [--json]

`--nats-url` also takes one URL, used for every region (any server of the supercluster reaches every
region's streams through the gateways). Exit codes: 0 clean, 1 at least one violation, 2 bad usage or
a store that could not be read (no verdict).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Final

from control.audit.residency import DEFAULT_ROW_LIMIT, AuditError, audit_residency
from control.db.__main__ import UsageError, check_database_url
from control.db.topology import REGIONS

EXIT_CLEAN: Final = 0
EXIT_VIOLATIONS: Final = 1
EXIT_ERROR: Final = 2


def parse_nats_urls(raw: str) -> dict[str, str]:
    """`eu=URL,in=URL,us=URL` (every region once), or a single URL for all regions."""
    raw = raw.strip()
    if not raw:
        raise UsageError("--nats-url is empty")
    if "=" not in raw.split(",")[0].split("://")[0]:
        if "," in raw:
            raise UsageError("--nats-url: give region=URL pairs, or one URL for every region")
        return dict.fromkeys(REGIONS, raw)
    urls: dict[str, str] = {}
    for pair in raw.split(","):
        region, sep, url = pair.partition("=")
        region, url = region.strip(), url.strip()
        if not sep or not url:
            raise UsageError(f"--nats-url: expected region=URL, got {pair!r}")
        if region not in REGIONS:
            raise UsageError(f"--nats-url: unknown region {region!r}; expected {', '.join(REGIONS)}")
        if region in urls:
            raise UsageError(f"--nats-url: region {region} given twice")
        urls[region] = url
    missing = [r for r in REGIONS if r not in urls]
    if missing:
        raise UsageError(f"--nats-url: no URL for region(s) {', '.join(missing)}")
    return urls


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m control.audit", description="AutoSpeak operator audits.")
    sub = parser.add_subparsers(dest="audit", required=True, metavar="{residency}")
    res = sub.add_parser(
        "residency", help="every row, event and recording is in its tenant's home region",
        description="Check that every database row, call event, live call state and recording of each "
                    "tenant rests in the tenant's home region.",
        epilog="exit status: 0 clean, 1 violations found, 2 bad usage or a store could not be read",
    )
    res.add_argument("--database-url", required=True, help="postgresql://... or cockroachdb://...")
    res.add_argument("--nats-url", required=True, help="eu=URL,in=URL,us=URL (or one URL for all)")
    res.add_argument("--object-store", required=True, type=Path,
                     help="object store root (holds one directory per region's bucket)")
    res.add_argument("--json", action="store_true", help="print the report as JSON")
    res.add_argument("--row-limit", type=int, default=DEFAULT_ROW_LIMIT,
                     help="violating rows listed per table and check (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_database_url(args.database_url)
        nats_urls = parse_nats_urls(args.nats_url)
        if args.row_limit < 1:
            raise UsageError("--row-limit must be at least 1")
        if not args.object_store.is_dir():
            raise UsageError(f"--object-store {args.object_store} is not a directory")
    except UsageError as exc:
        parser.error(str(exc))  # exits 2
    try:
        report = asyncio.run(audit_residency(args.database_url, nats_urls, args.object_store,
                                             row_limit=args.row_limit))
    except AuditError as exc:
        print(f"error: residency audit did not complete: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(report.to_json() if args.json else report.format())
    return EXIT_CLEAN if report.clean else EXIT_VIOLATIONS


if __name__ == "__main__":
    raise SystemExit(main())
