"""Language understanding for the embedded brain, offline: MiniLM sentence embeddings run in numpy
(`embeddings`), and intents and options matched by meaning against example utterances (`intents`)."""
