"""The `autospeak eval` subcommands (run, gate), registered by cells/cli.py."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _run(args: argparse.Namespace) -> int:
    from evals.bench import runner

    if args.repeat < 1 or args.parallel < 1:
        raise SystemExit("--repeat and --parallel must be at least 1")
    return runner.main(args.suite, args.repeat, args.parallel, args.report, args.only, tuple(args.worker_arg))


def _gate(args: argparse.Namespace) -> int:
    from evals.bench import gate

    return gate.main(args.baseline, args.candidate, args.margins)


def add_parser(sub: Any) -> None:
    ev = sub.add_parser("eval", help="scenario suites as whole calls: verdicts, figures, and the gate")
    ev_sub = ev.add_subparsers(dest="eval_command", required=True)
    run = ev_sub.add_parser("run",
                            help="run a suite (a directory of scenario YAML files) on the embedded stack")
    run.add_argument("suite", type=Path, help="e.g. evals/scenarios/reception/golden")
    run.add_argument("--repeat", type=int, default=1, help="run every scenario N times")
    run.add_argument("--parallel", type=int, default=1, help="calls at once (each is a worker process)")
    run.add_argument("--report", type=Path, default=None,
                     help="report directory (default data/eval/SUITE-TIME)")
    run.add_argument("--only", default=None, help="only scenarios whose name contains this")
    run.add_argument("--worker-arg", action="append", default=[],
                     help="an argument for the worker under test (repeatable), e.g. --worker-arg=--profile "
                          "--worker-arg=instant for a candidate configuration")
    run.set_defaults(func=_run)
    gate = ev_sub.add_parser("gate", help="refuse a candidate whose report regresses beyond margins")
    gate.add_argument("--baseline", type=Path, required=True, help="the current configuration's report.json")
    gate.add_argument("--candidate", type=Path, required=True, help="the candidate's report.json")
    gate.add_argument("--margins", default=None,
                      help="e.g. task_success=0.05,violations=0,p95_rel=0.2,p95_ms=150,"
                           "caller_wer=0.03,agent_wer=0.03,all_stages=0 (1: gate every stage's p95, not only "
                           "voice_to_voice)")
    gate.set_defaults(func=_gate)
