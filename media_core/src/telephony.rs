//! The fused per-message paths for Twilio Media Streams (8 kHz G.711 in base64 JSON text
//! frames): one call per message each way, so that a 20 ms frame crosses the Python boundary
//! once instead of five times.
//!
//! Inbound: JSON -> base64 -> G.711 decode -> resample to the STT rate -> VAD.
//! Outbound: PCM at the TTS rate -> resample to 8 kHz -> G.711 encode -> 20 ms frames ->
//! base64 -> ready-to-send JSON `media` messages.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use crate::error::MediaError;
use crate::g711;
use crate::resample::Resampler;
use std::sync::Arc;

use crate::neural_vad::SileroModel;
use crate::vad::{Vad, VadConfig, VadOutput};

pub const CARRIER_RATE: u32 = 8_000;
/// Bytes of one 20 ms G.711 frame at 8 kHz.
pub const FRAME_BYTES: usize = 160;
/// Twilio media messages are ~300 bytes; anything far larger is refused before parsing.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Ulaw,
    Alaw,
}

impl Codec {
    pub fn parse(name: &str) -> Result<Self, MediaError> {
        match name.to_ascii_lowercase().as_str() {
            "ulaw" | "mulaw" | "pcmu" | "audio/x-mulaw" => Ok(Self::Ulaw),
            "alaw" | "pcma" | "audio/x-alaw" => Ok(Self::Alaw),
            other => Err(MediaError::InvalidParameter(format!("unknown codec {other:?}"))),
        }
    }

    fn decode_into(self, codes: &[u8], out: &mut Vec<i16>) {
        match self {
            Self::Ulaw => g711::ulaw_decode_into(codes, out),
            Self::Alaw => g711::alaw_decode_into(codes, out),
        }
    }

    fn encode_into(self, pcm: &[i16], out: &mut Vec<u8>) {
        match self {
            Self::Ulaw => g711::ulaw_encode_into(pcm, out),
            Self::Alaw => g711::alaw_encode_into(pcm, out),
        }
    }

    fn silence(self) -> u8 {
        match self {
            Self::Ulaw => g711::ULAW_SILENCE,
            Self::Alaw => g711::ALAW_SILENCE,
        }
    }
}

/// Twilio sends numbers as strings ("sequenceNumber": "4"); accept either form. These fields
/// are informative, so an odd value (negative, fractional, not a number) becomes `None` rather
/// than costing the caller 20 ms of audio.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number<'a> {
    Int(u64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

impl Number<'_> {
    fn value(&self) -> Option<u64> {
        match self {
            Self::Int(v) => Some(*v),
            Self::Text(s) => s.parse().ok(),
            Self::Other(_) => None,
        }
    }
}

#[derive(Deserialize)]
struct Media<'a> {
    #[serde(borrow, default)]
    track: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Number<'a>>,
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default, rename = "sequenceNumber")]
    sequence_number: Option<Number<'a>>,
    /// Parsed only for `media` events, so that other events never fail on its shape.
    #[serde(borrow, default)]
    media: Option<&'a serde_json::value::RawValue>,
}

/// One decoded inbound media message.
#[derive(Debug, Clone, Default)]
pub struct InboundFrame {
    /// PCM at the STT rate.
    pub pcm: Vec<i16>,
    pub vad: VadOutput,
    pub sequence_number: Option<u64>,
    /// Carrier media timestamp in ms since the stream began.
    pub timestamp_ms: Option<u64>,
    /// `inbound` (the caller) unless the carrier says otherwise.
    pub track: String,
}

pub struct InboundPath {
    codec: Codec,
    resampler: Resampler,
    vad: Vad,
    max_message_bytes: usize,
    decoded: Vec<i16>,
    raw: Vec<u8>,
}

impl InboundPath {
    pub fn new(stt_rate: u32, codec: Codec, vad: VadConfig, max_message_bytes: usize) -> Result<Self, MediaError> {
        Self::with_model(stt_rate, codec, vad, max_message_bytes, None)
    }

    /// As `new`, with the Silero-class network as the VAD's second stage when `model` is given.
    pub fn with_model(
        stt_rate: u32,
        codec: Codec,
        vad: VadConfig,
        max_message_bytes: usize,
        model: Option<Arc<SileroModel>>,
    ) -> Result<Self, MediaError> {
        Ok(Self {
            codec,
            resampler: Resampler::new(CARRIER_RATE, stt_rate)?,
            vad: Vad::with_model(stt_rate, vad, model)?,
            max_message_bytes,
            decoded: Vec::with_capacity(FRAME_BYTES),
            raw: Vec::with_capacity(FRAME_BYTES),
        })
    }

    pub fn stt_rate(&self) -> u32 {
        self.resampler.out_rate()
    }

    pub fn vad(&self) -> &Vad {
        &self.vad
    }

    pub fn reset(&mut self) {
        self.resampler.reset();
        self.vad.reset();
    }

    /// Decodes a whole carrier message. `Ok(None)` means it is valid JSON but not a `media`
    /// event (the caller handles `start`, `mark`, `dtmf`, `stop` itself).
    pub fn push_message(&mut self, message: &[u8]) -> Result<Option<InboundFrame>, MediaError> {
        if message.len() > self.max_message_bytes {
            return Err(MediaError::MessageTooLarge(message.len(), self.max_message_bytes));
        }
        // serde would also accept a JSON array in field order; carriers only send objects.
        if message.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(MediaError::MalformedMessage("expected a JSON object".into()));
        }
        let parsed: Message =
            serde_json::from_slice(message).map_err(|e| MediaError::MalformedMessage(e.to_string()))?;
        if parsed.event != "media" {
            return Ok(None);
        }
        let raw = parsed
            .media
            .ok_or_else(|| MediaError::MalformedMessage("media event without a media object".into()))?;
        let media: Media = serde_json::from_str(raw.get())
            .map_err(|e| MediaError::MalformedMessage(format!("media object: {e}")))?;
        let mut frame = self.push_payload(media.payload.as_bytes())?;
        frame.sequence_number = parsed.sequence_number.and_then(|n| n.value());
        frame.timestamp_ms = media.timestamp.and_then(|n| n.value());
        if let Some(track) = media.track {
            frame.track = track.into_owned();
        }
        Ok(Some(frame))
    }

    /// Decodes one base64 G.711 payload.
    pub fn push_payload(&mut self, payload_b64: &[u8]) -> Result<InboundFrame, MediaError> {
        if payload_b64.len() > self.max_message_bytes {
            return Err(MediaError::MessageTooLarge(payload_b64.len(), self.max_message_bytes));
        }
        self.raw.clear();
        STANDARD
            .decode_vec(payload_b64, &mut self.raw)
            .map_err(|e| MediaError::InvalidBase64(e.to_string()))?;
        self.decoded.clear();
        self.codec.decode_into(&self.raw, &mut self.decoded);
        let mut pcm = Vec::with_capacity(self.resampler.max_output_len(self.decoded.len()));
        self.resampler.process_i16(&self.decoded, &mut pcm);
        let vad = self.vad.process(&pcm);
        Ok(InboundFrame { pcm, vad, sequence_number: None, timestamp_ms: None, track: "inbound".into() })
    }
}

pub struct OutboundPath {
    codec: Codec,
    resampler: Resampler,
    /// `{"event":"media","streamSid":"...","media":{"payload":"` with the sid JSON-escaped.
    prefix: String,
    /// Encoded bytes not yet filling a 20 ms frame.
    pending: Vec<u8>,
    scratch: Vec<i16>,
}

impl OutboundPath {
    pub fn new(stream_sid: &str, tts_rate: u32, codec: Codec) -> Result<Self, MediaError> {
        let sid = serde_json::to_string(stream_sid).map_err(|e| MediaError::InvalidParameter(e.to_string()))?;
        Ok(Self {
            codec,
            resampler: Resampler::new(tts_rate, CARRIER_RATE)?,
            prefix: format!(r#"{{"event":"media","streamSid":{sid},"media":{{"payload":""#),
            pending: Vec::with_capacity(FRAME_BYTES * 2),
            scratch: Vec::new(),
        })
    }

    pub fn tts_rate(&self) -> u32 {
        self.resampler.in_rate()
    }

    /// Samples at 8 kHz waiting for a full frame.
    pub fn pending_samples(&self) -> usize {
        self.pending.len()
    }

    /// Converts PCM at the TTS rate into complete 20 ms messages; a remainder waits for more.
    pub fn push(&mut self, pcm: &[i16]) -> Vec<String> {
        self.scratch.clear();
        self.resampler.process_i16(pcm, &mut self.scratch);
        self.codec.encode_into(&self.scratch, &mut self.pending);
        self.drain_frames()
    }

    /// Ends the utterance: the resampler's tail, then the last partial frame padded with silence.
    pub fn flush(&mut self) -> Vec<String> {
        self.scratch.clear();
        self.resampler.flush_i16(&mut self.scratch);
        self.codec.encode_into(&self.scratch, &mut self.pending);
        let rem = self.pending.len() % FRAME_BYTES;
        if rem != 0 {
            let pad = FRAME_BYTES - rem;
            self.pending.extend(std::iter::repeat_n(self.codec.silence(), pad));
        }
        self.drain_frames()
    }

    /// Drops everything not yet emitted (barge-in: the caller talks over the agent).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.resampler.reset();
    }

    fn drain_frames(&mut self) -> Vec<String> {
        let n = self.pending.len() / FRAME_BYTES;
        let mut out = Vec::with_capacity(n);
        for chunk in self.pending.chunks_exact(FRAME_BYTES) {
            let mut msg = String::with_capacity(self.prefix.len() + 220 + 4);
            msg.push_str(&self.prefix);
            STANDARD.encode_string(chunk, &mut msg);
            msg.push_str("\"}}");
            out.push(msg);
        }
        self.pending.drain(..n * FRAME_BYTES);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut p = InboundPath::new(16_000, Codec::Ulaw, VadConfig::default(), 512).unwrap();
            let _ = p.push_message(&bytes);
            let _ = p.push_payload(&bytes);
        }

        #[test]
        fn arbitrary_json_shapes_never_panic(event in "[a-z]{0,6}", payload in "[A-Za-z0-9+/=]{0,40}", seq in any::<i64>()) {
            let mut p = InboundPath::new(8_000, Codec::Alaw, VadConfig::default(), 4096).unwrap();
            let msg = format!(r#"{{"event":"{event}","sequenceNumber":{seq},"media":{{"payload":"{payload}","timestamp":-1}}}}"#);
            let _ = p.push_message(msg.as_bytes());
        }

        #[test]
        fn outbound_emits_whole_frames_only(pcm in proptest::collection::vec(any::<i16>(), 0..3000)) {
            let mut o = OutboundPath::new("MZ", 16_000, Codec::Ulaw).unwrap();
            let msgs = o.push(&pcm);
            let total = msgs.len() * FRAME_BYTES + o.pending_samples();
            // 16k -> 8k halves the count; the resampler may hold one sample back.
            prop_assert!(total.abs_diff(pcm.len() / 2) <= 1);
        }
    }

    fn media_message(payload: &[u8], seq: u64) -> String {
        format!(
            r#"{{"event":"media","sequenceNumber":"{seq}","media":{{"track":"inbound","chunk":"1","timestamp":"{}","payload":"{}"}},"streamSid":"MZ1"}}"#,
            seq * 20,
            STANDARD.encode(payload)
        )
    }

    #[test]
    fn inbound_decodes_and_upsamples() {
        let mut p = InboundPath::new(16_000, Codec::Ulaw, VadConfig::default(), DEFAULT_MAX_MESSAGE_BYTES).unwrap();
        let frame = p.push_message(media_message(&[0xFF; 160], 3).as_bytes()).unwrap().unwrap();
        assert_eq!(frame.pcm.len(), 320);
        assert_eq!(frame.sequence_number, Some(3));
        assert_eq!(frame.timestamp_ms, Some(60));
        assert_eq!(frame.track, "inbound");
        assert!(frame.pcm.iter().all(|&s| s == 0));
    }

    #[test]
    fn non_media_events_are_passed_back() {
        let mut p = InboundPath::new(16_000, Codec::Ulaw, VadConfig::default(), DEFAULT_MAX_MESSAGE_BYTES).unwrap();
        let mark = br#"{"event":"mark","streamSid":"MZ1","mark":{"name":"x"}}"#;
        assert!(p.push_message(mark).unwrap().is_none());
    }

    #[test]
    fn bad_messages_are_errors() {
        let mut p = InboundPath::new(16_000, Codec::Ulaw, VadConfig::default(), 1024).unwrap();
        for bad in [
            &b"not json"[..],
            br#"{"event":"media"}"#,
            br#"{"event":"media","media":{"payload":"***"}}"#,
            br#"{"event":5}"#,
            br#"[]"#,
            br#"["media","3",[null,"40","AAAA"]]"#,
        ] {
            assert!(p.push_message(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let huge = vec![b' '; 2048];
        assert!(matches!(p.push_message(&huge), Err(MediaError::MessageTooLarge(2048, 1024))));
    }

    #[test]
    fn outbound_frames_are_20ms_and_valid_json() {
        let mut o = OutboundPath::new("MZ\"odd", 24_000, Codec::Ulaw).unwrap();
        let mut msgs = o.push(&vec![1000i16; 24_000 / 10]); // 100 ms
        msgs.extend(o.flush());
        assert!(msgs.len() >= 5);
        for m in &msgs {
            let v: serde_json::Value = serde_json::from_str(m).unwrap();
            assert_eq!(v["event"], "media");
            assert_eq!(v["streamSid"], "MZ\"odd");
            let bytes = STANDARD.decode(v["media"]["payload"].as_str().unwrap()).unwrap();
            assert_eq!(bytes.len(), FRAME_BYTES);
        }
        assert_eq!(o.pending_samples(), 0);
    }

    #[test]
    fn clear_drops_pending_audio() {
        let mut o = OutboundPath::new("MZ1", 8_000, Codec::Alaw).unwrap();
        assert!(o.push(&[5i16; 100]).is_empty());
        assert_eq!(o.pending_samples(), 100);
        o.clear();
        assert_eq!(o.pending_samples(), 0);
        assert!(o.flush().is_empty());
    }
}
