"""`python -m cells.worker`: serve one embedded worker (webhook + media WebSocket) with hypercorn."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

from hypercorn.asyncio import serve
from hypercorn.config import Config

from cells.worker.app import WorkerSettings, create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cells.worker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-dir", type=Path, default=Path("data/worker"))
    parser.add_argument("--public-url", default="", help="URL the carrier uses (default http://HOST:PORT)")
    parser.add_argument("--profile", choices=("embedded", "instant"), default="embedded",
                        help="providers: embedded (default) or instant (zero-latency, for load tests only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("AUTOSPEAK_LOG", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = os.environ.get("TWILIO_AUTH_TOKEN")
    if not token:
        raise SystemExit("TWILIO_AUTH_TOKEN must be set (the simulator and Twilio sign with it)")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    settings = WorkerSettings(public_base_url=args.public_url or f"http://{args.host}:{args.port}",
                              twilio_auth_token=token, data_dir=args.data_dir,
                              twilio_account_sid=os.environ.get("TWILIO_ACCOUNT_SID"),
                              twilio_api_base_url=os.environ.get("TWILIO_API_BASE_URL"),
                              transfer_number=os.environ.get("AUTOSPEAK_TRANSFER_NUMBER"))
    agent = None  # the app builds the embedded demo agent
    if args.profile == "instant":
        # Imported here only: the zero-latency providers belong to the load tests, never to real calls.
        from loadtest.calls.instant_profile import instant_agent

        agent = instant_agent(args.data_dir, transfer_number=settings.transfer_number)
    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.websocket_max_message_size = 64 * 1024
    config.accesslog = None
    stop = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(create_app(settings, agent), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
