"""`python -m cells.worker`: serve one worker with hypercorn: the embedded worker (webhook + media
WebSocket), or with --nats-url a media worker of a regional cell (calls assigned over NATS; the call
token secret comes from AUTOSPEAK_CALL_TOKEN_SECRET, shared with the cell's control plane)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import socket
from pathlib import Path

from hypercorn.asyncio import serve
from hypercorn.config import Config

from cells.agent import AgentEnv, CallAgent, agent_from_spec
from cells.contract.call_token import MIN_SECRET_BYTES, SECRET_ENV
from cells.contract.redaction import install_log_redaction
from cells.contract.twilio_signature import SHARED_KEYS_ENV, parse_shared_keys
from cells.knowledge.local import CONTENT_TYPES, LocalKnowledgeSearch
from cells.worker.agent import ReceptionAgent
from cells.worker.app import COORDINATION, WorkerSettings, create_app
from regions.catalogue import get_region

_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def expand_public_url(template: str, hostname: str) -> str:
    """`template` with `{hostname}` replaced; a name that is not one DNS label cannot go into a URL path."""
    if "{hostname}" not in template:
        return template
    if not _HOSTNAME.fullmatch(hostname):
        raise ValueError(f"this host's name {hostname!r} cannot stand in a URL")
    return template.replace("{hostname}", hostname.lower())


def _agent_from_file(path: Path, data_dir: Path, transfer_number: str | None,
                     knowledge: LocalKnowledgeSearch | None = None) -> CallAgent:
    try:
        spec = json.loads(path.read_text())
        return agent_from_spec(spec, data_dir=data_dir, transfer_number=transfer_number,
                               env=AgentEnv(knowledge=knowledge))
    except (OSError, ValueError) as exc:  # a bad record stops the worker before it takes a call
        raise SystemExit(f"cannot run the agent in {path}: {exc}") from None
def local_knowledge(paths: list[Path], cache_dir: Path) -> LocalKnowledgeSearch:
    """The embedded agent's knowledge: the files named, and the files in the folders named."""
    files: list[Path] = []
    for p in paths:
        if not p.exists():
            raise SystemExit(f"--knowledge: {p} does not exist")
        if p.is_file() and p.suffix.lower() not in CONTENT_TYPES:
            raise SystemExit(f"--knowledge: {p} is not a knowledge file ({', '.join(sorted(CONTENT_TYPES))})")
        found = sorted(f for f in p.iterdir() if f.suffix.lower() in CONTENT_TYPES) if p.is_dir() else [p]
        files.extend(found)
    return LocalKnowledgeSearch(files, cache_dir=cache_dir)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cells.worker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-dir", type=Path, default=Path("data/worker"))
    parser.add_argument("--public-url", default="",
                        help="URL the carrier uses (default http://HOST:PORT); {hostname} is replaced by "
                             "this host's name, so replicas behind one media ingress each hand out their own")
    parser.add_argument("--profile", choices=("embedded", "instant"), default="embedded",
                        help="providers: embedded (default) or instant (zero-latency, for load tests only)")
    parser.add_argument("--nats-url", default=None,
                        help="join the region's worker pool on this NATS server (a cell's worker)")
    parser.add_argument("--region", default="eu", help="the cell's region (with --nats-url)")
    parser.add_argument("--object-store", type=Path, default=None,
                        help="root of the regions' object stores, for call recordings (with --nats-url)")
    parser.add_argument("--capacity", type=int, default=50, help="concurrent calls this worker takes")
    parser.add_argument("--max-calls", type=int, default=None,
                        help="the embedded worker's limit: its webhook answers busy past this many calls at "
                             "once (default: --capacity)")
    parser.add_argument("--worker-id", default="", help="this worker's id (default: <region>-<host>-<port>)")
    parser.add_argument("--agent-spec", type=Path, default=None,
                        help="the embedded worker answers as this agent record (the control plane's agent "
                             "JSON) instead of the demo clinic")
    parser.add_argument("--pcm-streams", action="store_true",
                        help="also take calls as raw 16-bit PCM over a WebSocket at /pcm")
    parser.add_argument("--knowledge", type=Path, action="append", default=[],
                        help="a knowledge file (or a folder of them) the embedded agent answers questions "
                             "from, indexed in memory at start; repeatable")
    return parser


async def _serve(settings: WorkerSettings, agent: CallAgent | None, host: str, port: int) -> None:
    """Serves the worker app until SIGINT/SIGTERM (a cell's worker hands its calls over first)."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.websocket_max_message_size = 64 * 1024
    config.accesslog = None
    stop = asyncio.Event()
    app = create_app(settings, agent)
    coord = app.extensions.get(COORDINATION)
    stopping: list[asyncio.Task[None]] = []

    async def hand_over_then_stop() -> None:
        # A cell's worker first leaves the pool and hands its calls over (their state saved, events
        # flushed, streams closed so that another worker resumes them); then the server stops.
        try:
            if coord is not None:
                await coord.hand_over()
        except Exception:
            logging.getLogger(__name__).exception("handing calls over failed")
        finally:
            stop.set()

    def on_signal() -> None:
        if stopping:  # a second signal: stop now
            stop.set()
        else:
            stopping.append(asyncio.get_running_loop().create_task(hand_over_then_stop()))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.capacity < 1:
        parser.error("--capacity must be at least 1")
    if args.max_calls is not None and args.max_calls < 1:
        parser.error("--max-calls must be at least 1")
    try:
        args.public_url = expand_public_url(args.public_url, socket.gethostname())
    except ValueError as exc:
        parser.error(str(exc))
    try:
        region = get_region(args.region).code
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=os.environ.get("AUTOSPEAK_LOG", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()  # no card number in any log line of this process
    token = os.environ.get("TWILIO_AUTH_TOKEN")
    if not token:
        raise SystemExit("TWILIO_AUTH_TOKEN must be set (the simulator and Twilio sign with it)")
    try:
        shared_keys = parse_shared_keys(os.environ.get(SHARED_KEYS_ENV))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    args.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    extra: dict[str, object] = {}
    if args.nats_url:
        secret = os.environ.get(SECRET_ENV, "")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise SystemExit(f"{SECRET_ENV} must hold the cell's call token secret "
                             f"(at least {MIN_SECRET_BYTES} bytes) when the worker joins a cell")
        extra = {"call_token_secret": secret, "nats_url": args.nats_url, "region": region,
                 "worker_id": args.worker_id or f"{region}-{socket.gethostname()}-{args.port}",
                 "object_store": args.object_store}
    settings = WorkerSettings(public_base_url=args.public_url or f"http://{args.host}:{args.port}",
                              twilio_auth_token=token, twilio_shared_keys=shared_keys,
                              data_dir=args.data_dir,
                              twilio_account_sid=os.environ.get("TWILIO_ACCOUNT_SID"),
                              twilio_api_base_url=os.environ.get("TWILIO_API_BASE_URL"),
                              transfer_number=os.environ.get("AUTOSPEAK_TRANSFER_NUMBER"),
                              capacity=args.capacity, pcm_streams=args.pcm_streams,
                              max_calls=args.max_calls or args.capacity, **extra)  # type: ignore[arg-type]
    agent = None  # the app builds the embedded demo agent
    knowledge = (local_knowledge(args.knowledge, args.data_dir / "knowledge")
                 if args.knowledge and not args.nats_url and args.profile == "embedded" else None)
    if args.agent_spec is not None:
        if args.nats_url:
            parser.error("--agent-spec is for the embedded worker (a cell worker gets agents with its calls)")
        agent = _agent_from_file(args.agent_spec, args.data_dir, settings.transfer_number, knowledge)
    if knowledge is not None and agent is None:
        agent = ReceptionAgent(data_dir=args.data_dir, transfer_number=settings.transfer_number,
                               knowledge=knowledge)
    if args.profile == "instant":
        # Imported here only: the zero-latency providers belong to the load tests, never to real calls.
        from loadtest.calls.instant_profile import instant_agent, provider_config

        if args.nats_url:
            settings.providers = provider_config()
        else:
            agent = instant_agent(args.data_dir, transfer_number=settings.transfer_number)
    asyncio.run(_serve(settings, agent, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
