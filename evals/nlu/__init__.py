"""Intent matching accuracy (embedding matcher vs the rule reader) and the encoder's cost."""
