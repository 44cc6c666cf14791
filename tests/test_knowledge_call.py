"""A whole call with real audio answered from the clinic's knowledge files: the embedded worker (which
indexes the demo files in memory at start, no database) is called by the Twilio peer in real time with an
eSpeak NG caller. The caller asks something only a knowledge file holds and hears the answer, then asks
something no file holds and hears "I don't know" with an offer; the agent's audio is transcribed by a
separate Whisper to check what the caller heard, not only what the agent meant to say."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from pathlib import Path

from cells.simulator.caller import ScriptedCaller
from cells.simulator.run import agent_utterances, embedded_worker, transcribe
from cells.simulator.scripts import SCRIPTS
from cells.simulator.twilio_peer import TwilioPeer
from cells.speech.espeak import EspeakEngine

TOKEN = secrets.token_hex(16)


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", "")).split())


def test_a_caller_hears_the_answer_from_a_document_and_i_dont_know_for_the_rest(tmp_path: Path) -> None:
    async def run(url: str) -> tuple[str, object]:
        peer = TwilioPeer(url, TOKEN)
        await peer.open_stream(await peer.ring())
        result = await ScriptedCaller(peer, SCRIPTS["knowledge"], engine=EspeakEngine(), voice="en-us+f2",
                                      rate_wpm=170, max_call_s=90).run()
        return peer.call_sid, result

    with embedded_worker(tmp_path, TOKEN) as url:
        sid, result = asyncio.run(run(url))
    record = json.loads((tmp_path / "calls" / f"{sid}.json").read_text())
    said = [m["content"] for m in record["history"] if m["role"] == "assistant" and m["content"]]
    heard_by_agent = [t.get("caller_text", "") for t in record.get("turns", [])]
    # Only the FAQ file says so (the clinic's configuration knows nothing of wifi).
    answer = next((s for s in said if "free wifi is available in the waiting room" in s), None)
    assert answer is not None, f"agent said {said}; heard {heard_by_agent}"
    refusal = next((s for s in said if "don't know" in s), None)
    assert refusal is not None and "transfer you" in refusal, f"agent said {said}; heard {heard_by_agent}"
    assert said.index(answer) < said.index(refusal)
    assert record.get("disposition") == "completed"  # declined the transfer, said goodbye
    # What reached the caller's ear: the agent's audio, transcribed by a recogniser of its own.
    heard = _plain(" ".join(asyncio.run(transcribe([a for _, a in agent_utterances(result.agent_audio)]))))
    assert "free wifi" in heard.replace("wi fi", "wifi"), heard
    assert "don't know" in heard or "do not know" in heard, heard
