"""The per-call loop: turn-taking, barge-in, paced playout with marks, per-stage timestamps."""
