"""AutoSpeak evals."""
