"""VAD accuracy and cost against webrtcvad and Silero on a labelled set built offline."""
