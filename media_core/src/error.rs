//! Errors of the core. The binding layer maps each to a Python exception; nothing panics.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum MediaError {
    #[error("unsupported sample rate {0} Hz (supported: 4000 to 192000)")]
    UnsupportedRate(u32),
    #[error("unsupported rate pair {0} -> {1} Hz (the reduced ratio needs too many phases)")]
    UnsupportedRatio(u32, u32),
    #[error("VAD supports 8000 and 16000 Hz, not {0}")]
    UnsupportedVadRate(u32),
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("malformed telephony message: {0}")]
    MalformedMessage(String),
    #[error("invalid base64 payload: {0}")]
    InvalidBase64(String),
    #[error("message too large: {0} bytes (limit {1})")]
    MessageTooLarge(usize, usize),
    #[error("invalid VAD weights: {0}")]
    InvalidWeights(String),
    #[error("payload has {0} samples; a packet must carry exactly one frame of {1} samples")]
    WrongFrameSize(usize, usize),
}
