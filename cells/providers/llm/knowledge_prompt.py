"""The agent's knowledge in a language model's prompt: the chunks retrieved for the caller's last turn,
each with its source, and the rule to answer only from them.

The caller's newest turn is searched within the answer budget (cells.dialogue.knowledge_answer); the
chunks go in as a system message just before that turn (the earlier prompt stays a stable prefix for
the server's prompt cache). When nothing reaches the threshold the note says so and tells the model to
say it does not know and offer a message or a transfer; when the search failed, to say it cannot look
that up now. The passages are also returned, for the call loop's claims check (`Grounding`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from cells.contract.knowledge import KnowledgeSearch
from cells.dialogue.knowledge_answer import ANSWER_BUDGET_S, is_known, is_question, retrieve, source_of
from cells.providers.base import Message

RULES: Final = ("Answer questions about the business only from the knowledge passages given for the "
                "caller's turn, in one or two short sentences that read well aloud. If they do not hold "
                "the answer, say you don't know and offer to take a message or transfer the caller; "
                "never guess, and never use facts about the business from anywhere else.")
NOTHING_FOUND: Final = ("Knowledge: nothing in the business's documents matches the caller's last turn. If "
                        "it asks about the business, say you don't know and offer to take a message or "
                        "transfer the caller; do not guess.")
UNAVAILABLE: Final = ("Knowledge: the business's documents cannot be searched right now. If the caller asks "
                      "about the business, say you can't look that up right now and offer to take a message "
                      "or transfer the caller; do not answer from memory.")
MIN_WORDS: Final = 3
"""Turns shorter than this ("yes", "Tuesday at ten") answer the agent; they are not searched."""


def _last_user(messages: Sequence[Message]) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)


async def with_knowledge(messages: Sequence[Message], search: KnowledgeSearch, *,
                         budget_s: float = ANSWER_BUDGET_S) -> tuple[list[Message], tuple[str, ...]]:
    """(the messages with the knowledge note before the caller's last turn, the passages given)."""
    out = list(messages)
    at = _last_user(out)
    if at is None or len(out[at].content.split()) < MIN_WORDS:
        return out, ()
    question = out[at].content
    answer = await retrieve(search, question, budget_s=budget_s)
    if answer.error is not None:
        note, passages = UNAVAILABLE, ()
    elif not is_known(answer):
        if not is_question(question):
            return out, ()  # a statement with nothing to look up: no note to misread as "say you don't know"
        note, passages = NOTHING_FOUND, ()
    else:
        passages = tuple(h.text for h in answer.hits)
        lines = [f"[{i}] ({source_of(h)}) {h.text}" for i, h in enumerate(answer.hits, start=1)]
        note = "Knowledge for the caller's last turn (source in brackets):\n" + "\n".join(lines)
    out.insert(at, Message("system", f"{RULES}\n{note}"))
    return out, passages
