"""Intent accuracy: the embedding matcher (cells.nlu.intents) against the rule-based reader
(cells.agents.reception.intents.understand), and the two together (rules first, the matcher when the rules
find nothing), on two labelled sets the matcher's examples were not drawn from:

- evals/nlu/data/paraphrase_tests.json: the caller turns of tests/test_dialogue_paraphrases.py,
  lowercase and unpunctuated as a speech recogniser writes them (the rules were written for these);
- evals/nlu/data/caller_phrasings.json: new phrasings, Whisper-style, off-topic turns among them.

A rule reading counts as right when the expected intent is among the intents it found (of the
matcher's intent set), wrong when it found others, and no answer when it found none of them. An
off-topic turn is right when nothing claims it. "rules, then matcher" asks the matcher only when the
rules found nothing; "matcher, then rules" the other way round. The "(policy)" rows read as the policy
does at an open question: a turn naming a service, day or time but no request counts as "book" (the
policy starts a booking); "rules (policy)" is understand alone, "wired (policy)" understand with the
SemanticReader (cells.agents.reception.semantic), which the policy runs.

evals/nlu/data/held_out_phrasings.json is scored only with --held-out: it was written before the
wired combination and kept out of every choice made for it.

Run: python -m evals.nlu.intents              (the table; -v lists every miss)
     python -m evals.nlu.intents --held-out   (the held-out set, once)
     python -m evals.nlu.intents --tune       (leave-one-out over the examples, and the threshold curve)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from cells.agents.reception.clinic import default_clinic
from cells.agents.reception.intents import find_service, understand
from cells.agents.reception.semantic import SemanticReader, pin_blas_to_one_thread, service_options
from cells.dialogue.spoken import tokenize
from cells.nlu.intents import RECEPTION_INTENTS, IntentMatcher, match_option

DATA = Path(__file__).parent / "data"
SETS = {"paraphrase tests": DATA / "paraphrase_tests.json",
        "new caller phrasings": DATA / "caller_phrasings.json"}
HELD_OUT = {"held-out phrasings": DATA / "held_out_phrasings.json"}
NONE = "none"
TODAY = date(2026, 3, 2)


def load(path: Path) -> list[tuple[str, str]]:
    return [(text, label) for text, label in json.loads(path.read_text())["utterances"]]


@dataclass
class Tally:
    right: int = 0
    wrong: int = 0
    silent: int = 0  # no answer on an on-topic turn
    misses: list[str] = field(default_factory=list)

    def add(self, text: str, expected: str, got: str | None, candidates: set[str]) -> None:
        if expected == NONE:
            ok = not candidates
        else:
            ok = expected in candidates
            self.silent += not candidates
        self.right += ok
        self.wrong += not ok and (expected == NONE or bool(candidates))
        if not ok:
            self.misses.append(f"{text!r}: expected {expected}, got {got or 'nothing'}")

    def row(self, name: str) -> str:
        total = self.right + self.wrong + self.silent
        return (f"{name:<22} {self.right:>5} {self.wrong:>5} {self.silent:>9} {total:>5}"
                f" {100 * self.right / max(total, 1):>8.1f}%")


def rule_intents(text: str, intents: set[str]) -> set[str]:
    return understand(text, TODAY, default_clinic()).intents & intents


def policy_intents(text: str, intents: set[str], reader: SemanticReader | None) -> set[str]:
    u = understand(text, TODAY, default_clinic(), expecting="intent", reader=reader)
    found = u.intents & intents
    if not found and (u.service or u.date or u.time):
        return {"book"}  # ReceptionSteps._switch_flow: bare slots at an open question start a booking
    return found


def evaluate(matcher: IntentMatcher, items: Sequence[tuple[str, str]]) -> dict[str, Tally]:
    intents = set(matcher.intents)
    matches = matcher.match_many([t for t, _ in items])
    reader = SemanticReader(lambda: matcher)
    out = {name: Tally() for name in ("rules", "matcher", "rules, then matcher", "matcher, then rules",
                                      "rules (policy)", "wired (policy)")}
    for (text, expected), match in zip(items, matches, strict=True):
        rules = rule_intents(text, intents)
        mine = {match.intent} if match else set()
        out["rules"].add(text, expected, ",".join(sorted(rules)), rules)
        out["matcher"].add(text, expected, match and f"{match.intent} ({match.score:.2f})", mine)
        both = rules or mine
        out["rules, then matcher"].add(text, expected, ",".join(sorted(both)), both)
        other = mine or rules
        out["matcher, then rules"].add(text, expected, ",".join(sorted(other)), other)
        for name, by in (("rules (policy)", None), ("wired (policy)", reader)):
            got = policy_intents(text, intents, by)
            out[name].add(text, expected, ",".join(sorted(got)), got)
    return out


def report(matcher: IntentMatcher, verbose: bool, sets: dict[str, Path] = SETS) -> None:
    print(f"matcher: {len(matcher.intents)} intents, threshold {matcher.threshold}, margin {matcher.margin}, "
          f"top_k {matcher.top_k}")
    for set_name, path in sets.items():
        items = load(path)
        off = sum(label == NONE for _, label in items)
        print(f"\n{set_name}: {len(items)} turns ({off} off-topic)")
        print(f"{'reader':<22} {'right':>5} {'wrong':>5} {'no answer':>9} {'total':>5} {'accuracy':>9}")
        for name, tally in evaluate(matcher, items).items():
            print(tally.row(name))
            if verbose:
                for miss in tally.misses:
                    print(f"    {miss}")


def services_report(verbose: bool, path: Path = SETS["new caller phrasings"]) -> None:
    """Which service a caller means: the rules' synonym lookup against match_option over the clinic's
    services, each described by its spoken name and synonyms (as first tried) or by its name and
    description, and the wired reading: what the policy reads in the answer to "What would you like to
come in for?" (synonyms, then name and description). 'none' rows name no service: right when nothing
is read."""
    clinic = default_clinic()
    by_synonyms = {s.key: [s.name, *s.synonyms] for s in clinic.services}
    described = service_options(clinic)
    items = [(t, k) for t, k in json.loads(path.read_text())["services"]]
    rules, mine, desc, wired = Tally(), Tally(), Tally(), Tally()
    for text, expected in items:
        found = find_service(tokenize(text), clinic)
        rules.add(text, expected, found, {found} if found else set())
        for tally, options in ((mine, by_synonyms), (desc, described)):
            got = match_option(text, options)
            tally.add(text, expected, got and f"{got[0]} ({got[1]:.2f})", {got[0]} if got else set())
        both = found or ((got := match_option(text, described)) and got[0])
        wired.add(text, expected, both, {both} if both else set())
    print(f"\nservices named in the caller's words: {len(items)} turns"
          f" ({sum(k == NONE for _, k in items)} naming none)")
    print(f"{'reader':<22} {'right':>5} {'wrong':>5} {'no answer':>9} {'total':>5} {'accuracy':>9}")
    for name, tally in (("rules (synonyms)", rules), ("match_option synonyms", mine),
                        ("match_option described", desc), ("wired (policy)", wired)):
        print(tally.row(name))
        if verbose:
            for miss in tally.misses:
                print(f"    {miss}")


def _leave_one_out(examples: dict[str, list[str]], top_k: int,
                   embed: Callable[[list[str]], np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Each example scored against the other examples (itself left out): scores and true intent index."""
    texts = [t for ts in examples.values() for t in ts]
    owner = np.array([i for i, ts in enumerate(examples.values()) for _ in ts])
    vectors = embed(texts)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return _intent_scores(sims, owner, len(examples), top_k), list(owner)


def _intent_scores(sims: np.ndarray, owner: np.ndarray, n_intents: int, top_k: int) -> np.ndarray:
    out = np.empty((sims.shape[0], n_intents), dtype=np.float32)
    for j in range(n_intents):
        own = np.sort(sims[:, owner == j], axis=1)
        k = min(top_k, own.shape[1])
        vals = own[:, -k:]
        # a left-out example may be its intent's only remaining -inf: average the finite ones
        finite = np.where(np.isfinite(vals), vals, np.nan)
        out[:, j] = np.nanmean(finite, axis=1)
    return out


def tune() -> None:
    """Settings chosen without the evaluation sets: leave-one-out accuracy over the examples for top_k,
    and for the threshold, how many left-out examples it keeps against how many off-topic turns
    (the examples file's own 'off_topic' list) it lets through."""
    data = json.loads(RECEPTION_INTENTS.read_text())
    examples, off_topic = data["intents"], data.get("off_topic", [])
    base = IntentMatcher(examples)
    embed = base._encoder.encode
    print("top_k  leave-one-out top-1 accuracy")
    for k in (1, 2, 3, 4):
        scores, owner = _leave_one_out(examples, k, embed)
        print(f"{k:>5}  {100 * np.mean(scores.argmax(axis=1) == np.array(owner)):.1f}%")
    for k in (2, 3):
        scores, owner = _leave_one_out(examples, k, embed)
        print(f"\ntop_k {k}: threshold/margin -> left-out examples matched right, "
              f"off-topic turns let through (of {len(off_topic)})")
        matcher = IntentMatcher(examples, top_k=k, encoder=base._encoder)
        off = matcher.score_matrix(off_topic)
        for threshold in (0.3, 0.35, 0.4, 0.45):
            for margin in (0.0, 0.01, 0.02):
                matcher.threshold, matcher.margin = threshold, margin
                got = [matcher.decide(row) for row in scores]
                right = sum(g is not None and g.intent == base.intents[o]
                            for g, o in zip(got, owner, strict=True))
                through = sum(matcher.decide(row) is not None for row in off)
                print(f"  {threshold:.2f}/{margin:.2f}: {100 * right / len(owner):5.1f}% right, "
                      f"{through} through")


def latency(matcher: IntentMatcher) -> None:
    text = "Hi, could I move my appointment to Thursday afternoon?"
    matcher.match(text)
    n = 30
    start = time.perf_counter()
    for _ in range(n):
        matcher.match(text)
    print(f"\nmatch() latency, one short turn: {1000 * (time.perf_counter() - start) / n:.1f} ms")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="list every miss")
    parser.add_argument("--tune", action="store_true", help="leave-one-out over the examples instead")
    parser.add_argument("--held-out", action="store_true", help="score the held-out set instead")
    args = parser.parse_args(argv)
    pin_blas_to_one_thread()  # as the policy does in a worker (cells/agents/reception/semantic.py)
    if args.tune:
        tune()
        return
    matcher = IntentMatcher.from_file()
    if args.held_out:
        report(matcher, args.verbose, HELD_OUT)
        services_report(args.verbose, HELD_OUT["held-out phrasings"])
        return
    report(matcher, args.verbose)
    services_report(args.verbose)
    latency(matcher)


if __name__ == "__main__":
    main()
