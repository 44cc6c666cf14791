"""`python -m control.retention`: apply every tenant's retention in one region now, and print the
deletion certificates as JSON lines (the cell also runs this periodically).

    python -m control.retention --region eu --database-url postgresql://... \
        [--nats-url nats://...] [--object-store DIR]

The region key that signs certificates is read from AUTOSPEAK_SECRETS_KEY (the cell's secret store).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import nats

from control.api.sealing import SECRETS_KEY_ENV, parse_region_key
from control.db.session import create_engine, session_factory
from control.retention.job import apply_region
from control.retention.scheduler import live_stores
from regions.catalogue import get_region


async def _run(args: argparse.Namespace) -> int:
    engine = create_engine(args.database_url, hide_parameters=True)
    nc = await nats.connect(args.nats_url, connect_timeout=5) if args.nats_url else None
    try:
        stores = live_stores(args.region, nc.jetstream() if nc else None, args.object_store,
                             parse_region_key(os.environ.get(SECRETS_KEY_ENV)))
        certificates = await apply_region(session_factory(engine), args.region, stores)
        for cert in certificates:
            sys.stdout.write(json.dumps(cert, sort_keys=True) + "\n")
        return 0 if all(c["complete"] for c in certificates) else 2
    finally:
        if nc is not None:
            await nc.close()
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m control.retention", description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--nats-url", default=None, help="the region's NATS server (events, live state)")
    parser.add_argument("--object-store", type=Path, default=None, help="root of the regions' object stores")
    args = parser.parse_args(argv)
    try:
        get_region(args.region)
    except (KeyError, ValueError) as exc:
        parser.error(f"unknown region {args.region!r}: {exc}")
    if args.object_store is not None and not args.object_store.is_dir():
        parser.error(f"--object-store {args.object_store} is not a directory")
    return asyncio.run(_run(args))


if __name__ == "__main__":
    raise SystemExit(main())
