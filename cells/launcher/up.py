"""`autospeak up`: start the embedded stack, print where everything is, serve until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path

from regions.catalogue import DEFAULT_BASE_PORT


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="start the three regional cells, NATS and PostgreSQL on this machine")
    up.add_argument("--data-dir", type=Path, default=Path("autospeak-data"),
                    help="where the database, JetStream, recordings and logs live (kept across restarts)")
    up.add_argument("--fresh", action="store_true", help="delete the data directory first")
    up.add_argument("--workers", type=int, default=1, help="media worker processes per region")
    up.add_argument("--capacity", type=int, default=8, help="concurrent calls per worker")
    up.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                    help="ports are base + 0/100/200 per region (+10 API, +20.. workers)")
    up.add_argument("--profile", choices=("embedded", "instant"), default="embedded",
                    help="worker providers: embedded speech (default) or instant (load tests only)")
    up.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cells.launcher.stack import EmbeddedStack, StackError, run_until_interrupted

    stack = EmbeddedStack(args.data_dir, workers=args.workers, capacity=args.capacity,
                          base_port=args.base_port, profile=args.profile, fresh=args.fresh)
    try:
        stack.start(progress=True)
    except StackError as exc:
        print(f"autospeak up failed: {exc}")
        return 1
    print(stack.summary(), flush=True)
    print("\nPress Ctrl-C to stop.", flush=True)
    return run_until_interrupted(stack)
