"""Named caller scripts for `autospeak call`."""

from __future__ import annotations

from cells.simulator.caller import CallerLine

SCRIPTS: dict[str, list[CallerLine]] = {
    "booking": [
        CallerLine("Hi, I would like to book a cleaning please."),
        CallerLine("Next Tuesday at ten in the morning."),
        CallerLine("My name is Maria Lopez."),
        CallerLine(dtmf="5552187#"),  # callers key numbers in when asked; the recogniser is weak at digits
        CallerLine("Yes, please."),
        CallerLine("No, that's all. Thank you, goodbye."),
    ],
    "hours": [
        CallerLine("What are your opening hours?"),
        CallerLine("Thank you, goodbye."),
    ],
    # The caller talks over the agent's greeting once it has been disclosed, then over a reply.
    "barge-in": [
        CallerLine("Hi, I would like to book a cleaning please."),
        CallerLine("Actually, what are your opening hours?", barge_in_after_ms=600),
        CallerLine("Thank you, goodbye."),
    ],
}
