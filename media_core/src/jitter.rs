//! Placeholder: jitter buffer (being written).
