"""The Reception policy's test harness lives with the dialogue evals (evals/dialogue/harness.py), which
print the same figures the tests assert; tests import it from here."""

from evals.dialogue.harness import NOW, FakeCall

__all__ = ["NOW", "FakeCall"]
