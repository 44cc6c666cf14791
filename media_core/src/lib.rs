//! AutoSpeak media core: the per-frame audio work of a phone call.
//!
//! The pure Rust modules below know nothing of Python; `py` (feature `python`) is the thin
//! PyO3 layer that the `media_core` Python package exposes.

pub mod error;
pub mod g711;
pub mod jitter;
pub mod neural_vad;
pub mod resample;
pub mod telephony;
pub mod vad;

#[cfg(feature = "python")]
mod py;

pub use error::MediaError;
