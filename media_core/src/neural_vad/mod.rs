//! A Silero-class neural VAD run natively: the network's forward pass on weights that the
//! caller reads from the installed `silero-vad` package (never bundled, never downloaded).

mod kernels;
mod model;
mod stft;
mod weights;

pub use model::{SileroModel, SileroStream, CHUNK, CONTEXT, SAMPLE_RATE};
pub use weights::{parse_onnx, parse_safetensors, Tensor, Tensors};

use std::sync::Arc;

/// Any-length 16 kHz input cut into 512-sample chunks, one probability per chunk.
#[derive(Debug, Clone)]
pub struct ChunkedStream {
    stream: SileroStream,
    pending: Vec<i16>,
}

impl ChunkedStream {
    pub fn new(model: Arc<SileroModel>) -> Self {
        Self { stream: SileroStream::new(model), pending: Vec::with_capacity(2 * CHUNK) }
    }

    pub fn process(&mut self, pcm: &[i16]) -> Vec<f32> {
        self.pending.extend_from_slice(pcm);
        let full = self.pending.len() / CHUNK;
        let mut out = Vec::with_capacity(full);
        for c in self.pending[..full * CHUNK].chunks_exact(CHUNK) {
            if let Ok(chunk) = <&[i16; CHUNK]>::try_from(c) {
                out.push(self.stream.predict(chunk));
            }
        }
        self.pending.drain(..full * CHUNK);
        out
    }

    pub fn reset(&mut self) {
        self.stream.reset();
        self.pending.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::MediaError;

    /// A model with small deterministic weights of the right shapes, as safetensors bytes.
    pub(crate) fn synthetic_safetensors(skip: Option<&str>, bad_shape: Option<&str>) -> Vec<u8> {
        let specs: [(&str, Vec<usize>); 15] = [
            ("stft_conv.weight", vec![258, 1, 256]),
            ("conv1.weight", vec![128, 129, 3]),
            ("conv1.bias", vec![128]),
            ("conv2.weight", vec![64, 128, 3]),
            ("conv2.bias", vec![64]),
            ("conv3.weight", vec![64, 64, 3]),
            ("conv3.bias", vec![64]),
            ("conv4.weight", vec![128, 64, 3]),
            ("conv4.bias", vec![128]),
            ("lstm_cell.weight_ih", vec![512, 128]),
            ("lstm_cell.weight_hh", vec![512, 128]),
            ("lstm_cell.bias_ih", vec![512]),
            ("lstm_cell.bias_hh", vec![512]),
            ("final_conv.weight", vec![1, 128, 1]),
            ("final_conv.bias", vec![1]),
        ];
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (i, (name, mut shape)) in specs.into_iter().enumerate() {
            if skip == Some(name) {
                continue;
            }
            if bad_shape == Some(name) {
                shape[0] += 1;
            }
            let n: usize = shape.iter().product();
            let start = data.len();
            for k in 0..n {
                data.extend_from_slice(&(((k * 7 + i) % 13) as f32 * 0.01 - 0.06).to_le_bytes());
            }
            header.insert(name.into(), serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
        }
        let json = serde_json::to_vec(&header).unwrap();
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&json);
        out.extend_from_slice(&data);
        out
    }

    #[test]
    fn synthetic_model_gives_one_probability_per_chunk_for_any_length() {
        let model = Arc::new(SileroModel::from_bytes(&synthetic_safetensors(None, None)).unwrap());
        let mut s = ChunkedStream::new(model);
        let mut total = 0;
        for n in [0usize, 1, 511, 1, 1024, 7, 3000] {
            let pcm: Vec<i16> = (0..n).map(|i| ((i * 7919) % 65536) as i32 as i16).collect();
            for p in s.process(&pcm) {
                assert!((0.0..=1.0).contains(&p), "{p}");
                total += 1;
            }
        }
        assert_eq!(total, (511 + 1 + 1 + 1024 + 7 + 3000) / CHUNK);
        let extremes = [i16::MIN, i16::MAX].repeat(CHUNK);
        assert!(s.process(&extremes).iter().all(|p| p.is_finite()));
    }

    #[test]
    fn missing_or_misshapen_tensors_are_clear_errors() {
        let e = SileroModel::from_bytes(&synthetic_safetensors(Some("conv3.bias"), None)).unwrap_err();
        assert!(matches!(&e, MediaError::InvalidWeights(m) if m.contains("conv3.bias")), "{e}");
        let e = SileroModel::from_bytes(&synthetic_safetensors(None, Some("lstm_cell.weight_hh"))).unwrap_err();
        assert!(matches!(&e, MediaError::InvalidWeights(m) if m.contains("shape")), "{e}");
    }

    #[test]
    fn garbage_bytes_are_errors_not_panics() {
        let good = synthetic_safetensors(None, None);
        for bytes in [&b""[..], &b"\x08\x07"[..], &[0xffu8; 40][..], &good[..good.len() / 2], &good[..20]] {
            assert!(SileroModel::from_bytes(bytes).is_err());
        }
    }

    #[test]
    fn reset_makes_a_stream_repeatable() {
        let model = Arc::new(SileroModel::from_bytes(&synthetic_safetensors(None, None)).unwrap());
        let pcm: Vec<i16> = (0..4 * CHUNK).map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16).collect();
        let mut s = ChunkedStream::new(model);
        let first = s.process(&pcm);
        s.reset();
        assert_eq!(s.process(&pcm), first);
    }
}
