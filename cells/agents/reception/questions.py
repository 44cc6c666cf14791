"""The Reception state machine's free questions: answered from the agent's knowledge outside a task,
and in the middle of one ("what's your cancellation policy?" while booking) with the task resumed after.

A mixin of ReceptionSteps, kept apart so each file reads in one sitting; it uses the host's `_prompt`
to go back to the question the task was at.
"""

from __future__ import annotations

from cells.agents.reception.intents import Understanding
from cells.agents.reception.state import Action, DialogueState, Say
from cells.dialogue.knowledge_answer import KnowledgeAnswers, is_question
from cells.knowledge.lexical import tokens

# Words of any price or duration question: what is left names the thing asked about.
_FACT_WORDS = frozenset(
    "much cost costs price prices priced charge charges fee fees pay long take takes time minutes hours "
    "dollars expensive cheap usually normally roughly about just tell know like would could please hi "
    "hello um uh so well also then one any some".split())


def _names_its_subject(question: str, answer: str) -> bool:
    """Whether the answer speaks of what the question names (word stems beyond the price words): a
    generic "what are your prices?" names nothing, and a passage about something else is not taken."""
    named = {t[:5] for t in tokens(question) if t not in _FACT_WORDS}
    return bool(named & {t[:5] for t in tokens(answer)})


class FreeQuestionSteps:
    knowledge: KnowledgeAnswers | None = None  # the agent's knowledge; the policy sets it when it has one

    def _prompt(self, s: DialogueState) -> list[Action]:
        raise NotImplementedError

    # A question with one of these intents or words is a calendar fact or a task, not one for the knowledge.
    _FACT_INTENTS = frozenset({"book", "move", "cancel", "human", "goodbye", "repeat", "hours", "price",
                               "duration", "abort"})
    _TASK_WORDS = frozenset({"cancel", "move", "reschedule", "postpone", "book", "change"})
    _SERVICE_LIST_WORDS = frozenset({"services", "treatments", "procedures"})
    _ADDRESS_WORDS = frozenset({"address", "located", "location", "directions", "street", "whereabouts",
                                "you", "wheres", "office", "area", "near"})
    _WEAK_BOOK = 0.45  # a booking read by meaning alone below this score does not stop a free question

    def _from_knowledge(self, s: DialogueState, u: Understanding) -> list[Action] | None:
        """A free question outside a task is answered from the agent's knowledge (or honestly not);
        hours, prices, durations, the service list and the address stay calendar facts, and a question
        about the caller's own appointment ("can I move it?") stays a task."""
        if s.flow is not None or s.expecting not in ("intent", "anything_else"):
            return self._aside(s, u)
        unlisted = self._unlisted_fact(u)
        if self.knowledge is None or not (unlisted or self._for_knowledge(u)):
            return None
        reply = self.knowledge.lookup(u.text)  # fetched by the policy before this replay
        if unlisted and (reply is None or not reply.known or not _names_its_subject(u.text, reply.text)):
            return None  # the rules' own price list or durations, as before
        s.failures = 0
        if reply is not None and reply.known:
            s.expecting = "anything_else"
            s.last_prompt = "Is there anything else I can help you with?"
            return [Say(reply.text), Say(s.last_prompt)]
        s.resume, s.expecting = "anything_else", "transfer"
        s.last_prompt = "Would you like me to transfer you to someone at the front desk?"
        text = reply.text if reply is not None else "I'm sorry, I can't look that up right now."
        return [Say(text), Say(s.last_prompt)]

    _TASK_INTENTS = frozenset({"book", "move", "cancel", "human", "goodbye", "abort"})

    def _unlisted_fact(self, u: Understanding) -> bool:
        """A price or duration question about nothing in the clinic's service list ("how much is an
        extraction?"): the knowledge answers it when it knows, else the rules give their own list."""
        return (bool({"price", "duration"} & set(u.intents)) and u.service is None and is_question(u.text)
                and not (set(u.intents) & self._TASK_INTENTS)
                and all(v is None for v in (u.date, u.time, u.phone, u.name)))

    def _for_knowledge(self, u: Understanding) -> bool:
        """Whether the turn is a free question: no task, no slot, no calendar fact."""
        words = set(u.tokens)
        intents = set(u.intents)
        if u.semantic is not None and u.semantic.intent == "book" and u.semantic.score < self._WEAK_BOOK:
            intents.discard("book")  # "is there wifi in the waiting room" read as booking, barely
        rules = "ask_rules" in intents  # "is there a fee if i cancel": about the task, not the task
        return not (not (rules or is_question(u.text)) or intents & self._FACT_INTENTS
                    or (words & self._TASK_WORDS and not rules)
                    or any(v is not None for v in (u.service, u.date, u.time, u.phone, u.name))
                    or ("services" in intents and words & self._SERVICE_LIST_WORDS)
                    or ("location" in intents and words & self._ADDRESS_WORDS))

    # A question in the middle of a task with one of these words is about the task itself ("what times
    # do you have", "is that the earliest"), not one for the knowledge.
    _TASK_QUESTION_WORDS = frozenset({"time", "times", "available", "earliest", "earlier", "later", "latest",
                                      "free", "open", "slot", "slots", "day", "days", "date", "that", "it",
                                      "one", "ones", "options", "else", "again", "name", "number"})

    def _aside(self, s: DialogueState, u: Understanding) -> list[Action] | None:
        """A free question asked in the middle of a task ("what's your cancellation policy?" while
        booking) is answered from the knowledge, then the task goes on where it was."""
        rules = "ask_rules" in u.intents
        if u.answer is not None or (not rules and (self.knowledge is None or not self._for_knowledge(u)
                                                   or set(u.tokens) & self._TASK_QUESTION_WORDS)):
            return None
        if rules and u.has_slots:
            return None  # "can i still cancel for free if i book friday": the slot first
        reply = self.knowledge.lookup(u.text) if self.knowledge else None  # fetched before this replay
        if "front_desk" in u.intents and (reply is None or not reply.known):
            return None  # "do you take my insurance", not in the knowledge: the front desk's, as before
        s.failures = 0
        # The answer, or that it does not know; mid-task no transfer is offered, the task goes on.
        text = reply.text if reply is not None else "I'm sorry, I can't look that up right now."
        return [Say(text), *self._prompt(s)]
