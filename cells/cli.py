"""The `autospeak` console script: one front for every job of the platform."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _bench_media(args: argparse.Namespace) -> int:
    from evals.vad import bench as vad_bench
    from loadtest.media import fused_bench, jitter_bench, resample_bench

    sections: dict[str, Callable[[], str]] = {
        "resample": resample_bench.report,
        "fused": fused_bench.report,
        "jitter": jitter_bench.report,
        "vad": lambda: vad_bench.report(quick=args.quick, manifest=args.manifest),
    }
    chosen = args.only or list(sections)
    for name in chosen:
        started = time.perf_counter()
        print(f"== {name}: measuring ...", file=sys.stderr, flush=True)
        text = sections[name]()
        print(text, flush=True)
        print(f"== {name}: done in {time.perf_counter() - started:.1f} s\n", file=sys.stderr, flush=True)
    return 0


def _bench_stt(args: argparse.Namespace) -> int:
    from evals.stt import manifest_bench

    try:
        text = manifest_bench.run(args.manifest, args.providers.split(","), args.variants.split(","),
                                  limit=args.limit, seed=args.seed, verbose=args.verbose)
    except (ValueError, OSError) as exc:
        print(f"autospeak bench stt: {exc}", file=sys.stderr)
        return 2
    print(text, flush=True)
    return 0


def _bench_calls(args: argparse.Namespace) -> int:
    from loadtest.calls import bench

    print(bench.report(quick=args.quick, levels=args.levels), flush=True)
    return 0


def _bench_cells(args: argparse.Namespace) -> int:
    from loadtest.cells import bench

    print(bench.report(quick=args.quick), flush=True)
    return 0


def _bench_api(args: argparse.Namespace) -> int:
    from loadtest.api import compare

    return compare.run(users=args.users, duration_s=args.duration, quick=args.quick)


def _bench_knowledge(args: argparse.Namespace) -> int:
    from evals.knowledge import bench

    if args.questions is not None and args.agent is None:
        raise SystemExit("--questions needs --agent (whose knowledge files it asks about)")
    agents = (args.agent,) if args.agent else bench.AGENTS
    kwargs = {} if args.threshold is None else {"threshold": args.threshold}
    print(bench.report(agents, args.questions, **kwargs), flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from cells.media_demo import run_demo

    return run_demo(seed=args.seed, loss=args.loss)


def _call(args: argparse.Namespace) -> int:
    if args.stack is not None:
        from cells.launcher.up import call_stack

        return call_stack(args.stack, args.region, args.script, agent=args.agent)
    if args.agent != "reception":  # a data-defined agent (cells/agents/<agent>/agent.json)
        from cells.simulator.vertical_call import main as call_vertical

        script = None if args.script == "booking" else args.script
        return call_vertical(args.agent, script, data_dir=args.data_dir, voice=args.voice or "en-gb+m3",
                             rate_wpm=args.rate)
    from cells.simulator.run import main as run_call

    return run_call(script=args.script, data_dir=args.data_dir, base_url=args.url,
                    voice=args.voice or "en-us+f2", rate_wpm=args.rate)


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`autospeak bench <target>`: each prints figures against named references."""
    from loadtest.calls import loadtest_cmd

    bench = sub.add_parser("bench", help="benchmarks that print figures against named references")
    bench_sub = bench.add_subparsers(dest="target", required=True)
    media = bench_sub.add_parser("media", help="media core vs soxr, audioop, webrtcvad, Silero")
    media.add_argument(
        "--only", action="append", choices=["resample", "fused", "jitter", "vad"], help="run only these"
    )
    media.add_argument("--quick", action="store_true", help="smaller VAD evaluation set")
    media.add_argument("--manifest", type=Path, help="VAD on real speech: CSV with a `file` column of WAVs")
    media.set_defaults(func=_bench_media)
    stt = bench_sub.add_parser(
        "stt", help="speech recognisers on your recordings (a file,text CSV) through the phone path")
    stt.add_argument("--manifest", type=Path, required=True, help="CSV with columns file,text")
    stt.add_argument("--providers", default="pocketsphinx,whisper",
                     help="comma-separated; name[+hints][:key=value;...], e.g. whisper+hints")
    stt.add_argument("--variants", default="clean",
                     help="comma-separated: clean, noiseNN (SNR dB), lossN (%% of packets)")
    stt.add_argument("--limit", type=int, default=None, help="only the first N recordings")
    stt.add_argument("--seed", type=int, default=0, help="seed of the noise and packet loss")
    stt.add_argument("-v", "--verbose", action="store_true", help="print every reference and hypothesis")
    stt.set_defaults(func=_bench_stt)
    calls = bench_sub.add_parser(
        "calls", help="call loop overhead, voice-to-voice latency, concurrent calls per worker")
    calls.add_argument("--quick", action="store_true", help="fewer turns and load levels (~2 minutes)")
    calls.add_argument("--levels", type=loadtest_cmd.parse_levels, default=None,
                       help="concurrent calls per capacity level, comma-separated (e.g. 1,16,64,128)")
    calls.set_defaults(func=_bench_calls)
    cells = bench_sub.add_parser(
        "cells", help="three cells: call setup over NATS, event pipeline lag, resume after a worker dies")
    cells.add_argument("--quick", action="store_true", help="fewer calls and one resume (~1.5 minutes)")
    cells.set_defaults(func=_bench_cells)
    api = bench_sub.add_parser("api", help="control API under locust load: granian vs hypercorn")
    api.add_argument("--users", type=int, default=None, help="concurrent locust users (default 20)")
    api.add_argument("--duration", type=int, default=None, help="seconds of load per server (default 20)")
    api.add_argument("--quick", action="store_true", help="3 users for 4 s per server (a smoke run)")
    api.set_defaults(func=_bench_api)
    knowledge = bench_sub.add_parser(
        "knowledge", help="knowledge retrieval on the demo agents: MiniLM vs BM25, recall, MRR, abstention")
    knowledge.add_argument("--agent", choices=["clinic", "hotel", "job"], help="one demo agent only")
    knowledge.add_argument("--questions", type=Path, help="a question file (expected | question per line)")
    knowledge.add_argument("--threshold", type=float, help="the similarity below which it abstains")
    knowledge.set_defaults(func=_bench_knowledge)
    turn = bench_sub.add_parser("turn", help="end of turn on real speech: VAD x (smart-turn or fixed "
                                             "silence), false barge-ins")
    turn.add_argument("--manifest", type=Path, default=None, help="speech-dev manifest.csv (8 kHz clips)")
    turn.add_argument("--only", choices=["end-of-turn", "barge-in", "sweep"],
                      help="run only this part (sweep: the smart-turn settings one at a time, on Silero)")
    turn.add_argument("--quick", action="store_true", help="no single words, quiet line and 10 dB only")
    turn.set_defaults(func=lambda a: __import__("evals.turn.bench", fromlist=["m"]).main(a.manifest, a.only,
                                                                                         a.quick))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autospeak", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a generated phone call through the media core and print figures")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulated network")
    demo.add_argument("--loss", type=float, default=0.03, help="mean packet loss of the simulated network")
    demo.set_defaults(func=_demo)

    call = sub.add_parser("call", help="call an embedded worker as Twilio does, with a scripted caller")
    call.add_argument("--agent", choices=("reception", "recruit", "stay"), default="reception",
                      help="which demo agent: the clinic, the warehouse job's phone screen or the hotel")
    call.add_argument("--script", default="booking",
                      help="booking, hours, barge-in, or a caller's own phrasing: one-breath, change-day, "
                           "phone-pause, casual-yes, move, ask-person; with --agent recruit: screen; "
                           "with --agent stay: reserve, no-booking")
    call.add_argument("--voice", default=None,
                      help="the caller's eSpeak NG voice[+variant], e.g. en-gb, en-gb-scotland+f3, en-us+m3 "
                           "(default en-us+f2 for the clinic, en-gb+m3 for recruit and stay)")
    call.add_argument("--rate", type=int, default=170, help="the caller's speaking rate in words per minute")
    call.add_argument("--data-dir", type=Path, default=None, help="where the call's files go")
    call.add_argument("--url", default=None, help="call a worker already running at this URL")
    call.add_argument("--stack", type=Path, nargs="?", const=Path("autospeak-data"), default=None,
                      help="call the demo number of a running `autospeak up` (its data directory)")
    call.add_argument("--region", choices=("eu", "in", "us"), default="eu", help="with --stack: which cell")
    call.set_defaults(func=_call)

    from cells.launcher import up

    up.add_parser(sub)
    from evals.bench import cli as eval_cli

    eval_cli.add_parser(sub)
    from loadtest.calls import loadtest_cmd

    loadtest_cmd.add_parser(sub)

    _add_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
