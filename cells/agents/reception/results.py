"""The Reception state machine's reactions to tool results (calendar answers, bookings done or refused).

A mixin of ReceptionSteps, kept apart so each file reads in one sitting; it uses the host's
`_ask`/`_next` to continue the conversation after a result.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from cells.agents.reception.clinic import ClinicConfig
from cells.agents.reception.replies import booking_phrase, hours_sentence, say_date, say_hhmm, say_slots
from cells.agents.reception.state import Action, Call, DialogueState, Say


class ToolResultSteps:
    clinic: ClinicConfig

    @property
    def today(self) -> date:
        raise NotImplementedError

    def _ask(self, s: DialogueState, question: str, expecting: str | None = None) -> list[Action]:
        raise NotImplementedError

    def _next(self, s: DialogueState, skip_phone: bool = False) -> list[Action]:
        raise NotImplementedError

    # --- tool results -------------------------------------------------------------------------------

    def _on_availability(self, s: DialogueState, r: dict[str, Any]) -> list[Action]:
        if not r.get("ok", False):
            return self._tool_failed(s, r)
        day = say_date(r["date"], self.today)
        slots: list[str] = r.get("slots", [])
        if r.get("requested"):
            if r.get("available"):
                s.verified = True
                if s.flow == "book" and s.name:  # a day or time changed later in the call: say it back
                    nxt = self._next(s)  # (a read-back next says it anyway)
                    return nxt if s.expecting == "confirm" else [
                        Say(f"Okay, {day} at {say_hhmm(r['requested'])} is free."), *nxt]
                return self._next(s)
            s.time, s.verified = None, False
            reason = r.get("reason")
            hours = hours_sentence(self.clinic, date.fromisoformat(r["date"]))
            lead = {"closed": f"Sorry, we're closed on {r['weekday'].capitalize()}s.",
                    "in_past": "Sorry, that time has already passed.",
                    "outside_hours": f"Sorry, that's outside our hours. {hours}",
                    "not_on_grid": "Appointments start on the quarter hour.",
                    }.get(reason or "", f"Sorry, {say_hhmm(r['requested'])} on {day} is already taken.")
            if slots:
                s.offered = slots
                return [Say(lead), *self._ask(s, f"The closest times I have are {say_slots(slots)}. "
                                                 "Would one of those work?", "choose")]
            return [Say(lead), *self._offer_next(s, r)]
        if slots:
            s.offered = slots
            return self._ask(s, f"On {day} I have {say_slots(slots)}. Which works best for you?", "choose")
        if r.get("open") and s.preference and not r.get("reason"):
            # The day has room, only not at the preferred part of the day: offer the whole day instead.
            s.preference = None
            return [Say(f"Sorry, nothing fits that on {day}."),
                    Call("check_availability", {"service": r["service"], "date": r["date"]})]
        lead = (f"Sorry, we're closed on {r['weekday'].capitalize()}s." if not r.get("open")
                else f"Sorry, we're fully booked on {day}.")
        return [Say(lead), *self._offer_next(s, r)]

    def _offer_next(self, s: DialogueState, r: dict[str, Any]) -> list[Action]:
        nxt = r.get("next_available")
        if nxt:
            s.date, s.time, s.offered, s.preference = nxt["date"], None, nxt["slots"], None
            return self._ask(s, f"The next opening is {say_date(nxt['date'], self.today)}, at "
                                f"{say_slots(nxt['slots'])}. Would one of those work?", "choose")
        s.date = s.time = None
        return self._ask(s, "What other day would work for you?", "date")

    def _on_created(self, s: DialogueState, r: dict[str, Any]) -> list[Action]:
        if not r.get("ok", False):
            return self._slot_lost(s, r) if r.get("error") == "taken" else self._tool_failed(s, r)
        b = r["booking"]
        when = booking_phrase(self.clinic, b["service"], b["date"], b["time"], self.today)
        s.end_flow()
        s.last_prompt = "Is there anything else I can help you with?"
        return [Say(f"You're all set for your {when}."), Say(s.last_prompt)]

    def _on_found(self, s: DialogueState, r: dict[str, Any]) -> list[Action]:
        bookings = r.get("bookings") or []
        if not r.get("ok", False) or not bookings:
            s.lookup_failures += 1
            missing = f"Sorry, I couldn't find an upcoming appointment under {s.name}."
            s.name = None
            if s.lookup_failures >= 2:
                s.resume, s.expecting = "name", "transfer"
                s.last_prompt = "Would you like me to transfer you to the front desk?"
                return [Say(missing), Say(s.last_prompt)]
            return [Say(missing), *self._ask(s, "Could you tell me the name again?", "name")]
        s.booking = bookings[0]  # the soonest; the read-back names it, so a wrong pick is caught
        b = s.booking
        what = f"your {booking_phrase(self.clinic, b['service'], b['date'], b['time'], self.today)}"
        if s.flow == "cancel":
            s.readback = s.details()
            return [Say(f"I see {what}."), *self._ask(s, "Would you like me to cancel it?", "confirm")]
        if s.date == b["date"] and s.alternative:
            s.date = s.alternative  # "from tuesday to thursday at ten": the day named besides the booked one
            if s.time == b["time"]:
                s.time = None
        elif s.date == b["date"] and (s.time == b["time"] or (s.time is None and not s.preference)):
            s.date = s.time = None  # the caller named the old slot ("cant make it tuesday"), not the new one
        s.alternative = None
        return [Say(f"I see {what}."), *self._next(s)] if s.date or s.time or s.preference else \
            [Say(f"I see {what}."), *self._ask(s, "What day would you like to move it to?", "date")]

    def _on_moved(self, s: DialogueState, r: dict[str, Any]) -> list[Action]:
        if not r.get("ok", False):
            return self._slot_lost(s, r) if r.get("error") == "taken" else self._tool_failed(s, r)
        b = r["booking"]
        s.end_flow()
        s.last_prompt = "Is there anything else I can help you with?"
        when = f"{say_date(b['date'], self.today)} at {say_hhmm(b['time'])}"
        return [Say(f"Done. Your appointment is now on {when}."), Say(s.last_prompt)]

    def _on_cancelled(self, s: DialogueState, r: dict[str, Any]) -> list[Action]:
        if not r.get("ok", False):
            return self._tool_failed(s, r)
        b = r["cancelled"]
        s.end_flow()
        s.last_prompt = "Is there anything else I can help you with?"
        day = say_date(b["date"], self.today)
        return [Say(f"Your appointment on {day} is cancelled."), Say(s.last_prompt)]

    def _slot_lost(self, s: DialogueState, r: dict[str, Any]) -> list[Action]:
        s.time, s.verified, s.readback = None, False, None
        s.offered = list(r.get("alternatives") or [])
        if s.offered:
            return [Say("Sorry, that time was just taken."),
                    *self._ask(s, f"I can do {say_slots(s.offered)}. Would one of those work?", "choose")]
        return [Say("Sorry, that time was just taken."), *self._ask(s, "What other day works?", "date")]

    def _tool_failed(self, s: DialogueState, r: dict[str, Any]) -> list[Action]:
        s.resume, s.expecting = s.expecting, "transfer"
        s.last_prompt = "Would you like me to transfer you to the front desk?"
        return [Say("Sorry, I couldn't do that in our calendar."), Say(s.last_prompt)]
