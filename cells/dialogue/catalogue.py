"""What the neutral readers (intents, semantic) need to know of an agent's offer: the things callers
ask for by name or meaning, and the business's own names (never read as a caller's name). Any
vertical's configuration that has these attributes will do; the clinic's `ClinicConfig` is one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Offering(Protocol):
    @property
    def key(self) -> str: ...  # stable identifier used in tool arguments

    @property
    def name(self) -> str: ...  # how the agent says it

    @property
    def synonyms(self) -> tuple[str, ...]: ...  # caller phrasings, matched as whole words

    @property
    def description(self) -> str: ...  # what it is for, in a sentence (matched by meaning)


class Catalogue(Protocol):
    @property
    def name(self) -> str: ...  # the business's name

    @property
    def services(self) -> Sequence[Offering]: ...

    @property
    def staff(self) -> Sequence[str]: ...  # people's names that belong to the business
