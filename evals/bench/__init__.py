"""The evaluation bench: scenario files run as whole real-time calls, judged on the agent's real
audio and on the state it leaves in the tool's system, then compared by the gate."""
