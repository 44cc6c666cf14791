"""Speech recognition evaluation: word error rate and the embedded-STT bench on telephone audio."""
