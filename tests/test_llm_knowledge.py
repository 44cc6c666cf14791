"""The LLM brain with the agent's knowledge: the chunks retrieved for the caller's turn reach the model's
prompt with their sources (through the OpenAI SDK against a local fake server), a turn the knowledge does
not cover or a failed search tells the model to say so and offer a message or transfer, the knowledge
search reaches the model through the registry's per-agent context, and the call loop's claims check
speaks a sentence that restates a retrieved passage but still replaces an unbacked claim."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_call_safety import BookingBox, ScriptedLlm, Turns
from vendor_fakes.openai_fake import ChatReply, OpenAIFake

from cells.call.claims import check_sentence
from cells.contract.knowledge import KnowledgeAnswer
from cells.knowledge.local import LocalKnowledgeSearch
from cells.providers import registry
from cells.providers.base import Grounding, Message, TextDelta
from cells.providers.llm.knowledge_prompt import NOTHING_FOUND, RULES, UNAVAILABLE
from cells.providers.llm.openai_compat import OpenAICompatLlm

DEMO = Path(__file__).resolve().parents[1] / "cells" / "launcher" / "demo_knowledge"
KEY = "sk-test-key"


class Ready:
    """The demo clinic's in-memory index, its answers to the tests' questions worked out beforehand (real
    MiniLM), so that no loaded test machine runs past the budget (tested on its own)."""

    def __init__(self, search: LocalKnowledgeSearch, questions: list[str]) -> None:
        self.answers = {q: search.search_sync(q) for q in questions}

    async def search(self, question: str, *, top_k: int = 3) -> KnowledgeAnswer:
        return self.answers[question]


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory: pytest.TempPathFactory) -> Ready:
    search = LocalKnowledgeSearch(sorted(DEMO.glob("clinic*")), cache_dir=tmp_path_factory.mktemp("vectors"))
    return Ready(search, ["Is there wifi in the waiting room?", "Do you sell gift cards?"])


def _ask(knowledge: object, question: str) -> tuple[list[object], list[dict]]:
    """(what the model's stream yielded, the messages the server got)."""
    async def main() -> tuple[list[object], list[dict]]:
        async with OpenAIFake() as fake:
            fake.chat_script.append(ChatReply(text="Sure."))
            llm = OpenAICompatLlm(model="gpt-fake", base_url=fake.base_url, api_key=KEY, max_retries=0,
                                  knowledge=knowledge)  # type: ignore[arg-type]
            history = [Message("system", "You are the receptionist."), Message("assistant", "Hello."),
                       Message("user", question)]
            items = [i async for i in llm.complete(history)]
            return items, fake.requests[0]["messages"]

    return asyncio.run(main())


def test_the_retrieved_chunks_and_their_sources_are_in_the_prompt(knowledge: Ready) -> None:
    items, sent = _ask(knowledge, "Is there wifi in the waiting room?")
    note = sent[-2]
    assert note["role"] == "system"
    assert sent[-1] == {"role": "user", "content": "Is there wifi in the waiting room?"}
    assert note["content"].startswith(RULES)
    assert "(clinic_faq.csv) Q: Is there wifi in the waiting room? A: Yes: free wifi" in note["content"]
    assert sent[0]["content"] == "You are the receptionist."  # the stable prefix is untouched
    grounding = [i for i in items if isinstance(i, Grounding)]
    assert len(grounding) == 1 and any("free wifi" in p for p in grounding[0].passages)
    assert isinstance(items[0], Grounding)  # before the text, so the claims check has it in time


def test_an_uncovered_question_tells_the_model_to_say_it_does_not_know(knowledge: Ready) -> None:
    items, sent = _ask(knowledge, "Do you sell gift cards?")
    assert sent[-2]["content"].endswith(NOTHING_FOUND)
    assert not any(isinstance(i, Grounding) for i in items)
    _, sent = _ask(knowledge, "yes")  # an answer to the agent is not searched
    assert [m["role"] for m in sent] == ["system", "assistant", "user"]


class Broken:
    async def search(self, question: str, *, top_k: int = 3) -> KnowledgeAnswer:
        raise ConnectionError("no responders")


def test_a_failed_search_tells_the_model_it_cannot_look_it_up() -> None:
    items, sent = _ask(Broken(), "Is there wifi in the waiting room?")
    assert sent[-2]["content"].endswith(UNAVAILABLE)
    assert not any(isinstance(i, Grounding) for i in items)


def test_the_registry_context_gives_the_llm_brain_the_agents_knowledge(knowledge: Ready) -> None:
    config = registry.ProviderConfig(tenant={"llm": {"provider": "openai_compat", "options": {
        "model": "m", "api_key": KEY, "base_url": "http://127.0.0.1:9"}}})
    brain = registry.build("brain", config, context={"knowledge": knowledge, "clinic": None})
    assert isinstance(brain, OpenAICompatLlm) and brain.knowledge is knowledge


PASSAGE = ("Q: How do I get my dental records transferred? A: Your records are sent to your new dentist "
           "within 10 days of your email.")


def test_a_sentence_restating_the_knowledge_is_spoken_and_an_unbacked_claim_is_not() -> None:
    restated = "Your records are sent to your new dentist within 10 days."
    llm = ScriptedLlm([Grounding((PASSAGE,)), TextDelta(restated)])
    call = Turns(llm, BookingBox())
    assert call.caller("How do I get my records moved to a new dentist?") == [restated]
    # The same sentence without the passage is an outcome claim no tool backs.
    bare = Turns(ScriptedLlm([TextDelta(restated)]), BookingBox())
    assert bare.caller("How do I get my records moved?") != [restated]
    # A passage does not back a claim about the caller's own request.
    assert check_sentence("You're booked for Tuesday at ten.", [], lambda n: True,
                          ["Most appointments can be booked within a week."]) is not None
