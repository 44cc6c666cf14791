"""`python -m control.cell`: serve one region's control plane with granian (one worker process)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def log_config(level: str) -> dict[str, Any]:
    """granian's and the app's own log lines alike, with time, level and logger, on stderr."""
    line = {"()": "logging.Formatter", "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    # Card numbers never reach a log line, whatever logged them.
    handler = {"formatter": "line", "class": "logging.StreamHandler", "stream": "ext://sys.stderr",
               "filters": ["redact"]}
    return {
        "version": 1, "disable_existing_loggers": False,
        "filters": {"redact": {"()": "cells.contract.redaction.RedactingLogFilter"}},
        "formatters": {"line": line},
        "handlers": {"console": handler},
        "loggers": {"_granian": {"handlers": ["console"], "level": level.upper(), "propagate": False}},
        "root": {"handlers": ["console"], "level": level.upper()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m control.cell", description=__doc__)
    parser.add_argument("--region", required=True, choices=("eu", "in", "us"))
    parser.add_argument("--database-url", default=os.environ.get("AUTOSPEAK_DATABASE_URL"))
    parser.add_argument("--nats-url", default=os.environ.get("AUTOSPEAK_NATS_URL"),
                        help="the region's NATS server; without it only the REST API runs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--public-url", default="", help="this cell's URL as callers and Twilio see it")
    parser.add_argument("--object-store", type=Path, default=None, help="root of the regional object stores")
    parser.add_argument("--cells", default=os.environ.get("AUTOSPEAK_CELLS", ""),
                        help="every cell's public URL, eu=URL,in=URL,us=URL (for residency redirects)")
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (or AUTOSPEAK_DATABASE_URL) is required")
    public = args.public_url or f"http://{args.host}:{args.port}"
    env = {"AUTOSPEAK_REGION": args.region, "AUTOSPEAK_DATABASE_URL": args.database_url,
           "AUTOSPEAK_PUBLIC_URL": public, "AUTOSPEAK_CELLS": args.cells or f"{args.region}={public}"}
    if args.nats_url:
        env["AUTOSPEAK_NATS_URL"] = args.nats_url
    if args.object_store:
        env["AUTOSPEAK_OBJECT_STORE"] = str(args.object_store.resolve())
    os.environ.update(env)
    # Fail here, with a readable message, rather than inside granian's worker.
    from control.cell.asgi import cell_settings_from_env

    cell_settings_from_env()
    from granian import Granian
    from granian.constants import Interfaces

    Granian("control.cell.asgi:app", address=args.host, port=args.port, interface=Interfaces.ASGI,
            factory=True, workers=1, log_level=args.log_level, log_dictconfig=log_config(args.log_level),
            websockets=False).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
