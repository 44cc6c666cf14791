//! The Silero VAD v5/v6 16 kHz network, forward pass only, on weights read at run time.
//!
//! Per 512-sample chunk (32 ms) with the last 64 samples of the previous chunk in front:
//! reflect-pad 64 on the right -> STFT as a strided conv with the file's basis (4 frames of
//! 129 bins, magnitude) -> four conv1d(k=3, pad 1) + ReLU layers (strides 1, 2, 2, 1; 4 frames
//! down to 1) -> one LSTM cell (hidden 128) whose state is carried between chunks -> ReLU,
//! 1x1 conv, sigmoid. Every layer is stored so that it is a set of contiguous dot products.

use std::sync::Arc;

use super::kernels::{dot, dot4};
use super::stft::FftStft;
use super::weights::{parse_onnx, parse_safetensors, Tensor, Tensors};
use crate::error::MediaError;

pub const CHUNK: usize = 512;
pub const CONTEXT: usize = 64;
pub const SAMPLE_RATE: u32 = 16_000;
const WINDOW: usize = 256;
const HOP: usize = 128;
const BINS: usize = WINDOW / 2 + 1;
const FRAMES: usize = (CONTEXT + CHUNK + CONTEXT - WINDOW) / HOP + 1;
const HIDDEN: usize = 128;

/// (canonical safetensors name, ONNX initializer name, shape)
const TENSORS: [(&str, &str, &[usize]); 15] = [
    ("stft_conv.weight", "model.stft.forward_basis_buffer", &[2 * BINS, 1, WINDOW]),
    ("conv1.weight", "model.encoder.0.reparam_conv.weight", &[128, BINS, 3]),
    ("conv1.bias", "model.encoder.0.reparam_conv.bias", &[128]),
    ("conv2.weight", "model.encoder.1.reparam_conv.weight", &[64, 128, 3]),
    ("conv2.bias", "model.encoder.1.reparam_conv.bias", &[64]),
    ("conv3.weight", "model.encoder.2.reparam_conv.weight", &[64, 64, 3]),
    ("conv3.bias", "model.encoder.2.reparam_conv.bias", &[64]),
    ("conv4.weight", "model.encoder.3.reparam_conv.weight", &[HIDDEN, 64, 3]),
    ("conv4.bias", "model.encoder.3.reparam_conv.bias", &[HIDDEN]),
    ("lstm_cell.weight_ih", "model.decoder.rnn.weight_ih", &[4 * HIDDEN, HIDDEN]),
    ("lstm_cell.weight_hh", "model.decoder.rnn.weight_hh", &[4 * HIDDEN, HIDDEN]),
    ("lstm_cell.bias_ih", "model.decoder.rnn.bias_ih", &[4 * HIDDEN]),
    ("lstm_cell.bias_hh", "model.decoder.rnn.bias_hh", &[4 * HIDDEN]),
    ("final_conv.weight", "model.decoder.decoder.2.weight", &[1, HIDDEN, 1]),
    ("final_conv.bias", "model.decoder.decoder.2.bias", &[1]),
];

/// conv1d(k=3, padding 1); `w` is [out][k][in] so that one output is one dot product over
/// three consecutive rows of a time-major input.
#[derive(Debug, Clone)]
struct Conv {
    c_in: usize,
    c_out: usize,
    stride: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Conv {
    fn new(w: &Tensor, b: &Tensor, stride: usize) -> Self {
        let (c_out, c_in) = (w.shape[0], w.shape[1]);
        let mut wt = vec![0.0; c_out * 3 * c_in];
        for o in 0..c_out {
            for i in 0..c_in {
                for k in 0..3 {
                    wt[o * 3 * c_in + k * c_in + i] = w.data[(o * c_in + i) * 3 + k];
                }
            }
        }
        Self { c_in, c_out, stride, w: wt, b: b.data.clone() }
    }

    fn out_len(&self, len_in: usize) -> usize {
        (len_in + 2 - 3) / self.stride + 1
    }

    /// `x`: (len_in + 2) rows of `c_in`, the first and last zero (the padding). Writes the
    /// ReLU'd output into rows 1..=len_out of `y`, whose first and last rows are zero.
    fn forward(&self, x: &[f32], len_in: usize, y: &mut [f32]) -> usize {
        let len_out = self.out_len(len_in);
        let span = 3 * self.c_in;
        if len_out == 4 {
            // The first layer: each weight row read once for all four output steps.
            let windows: [&[f32]; 4] = std::array::from_fn(|t| &x[t * self.stride * self.c_in..][..span]);
            for o in 0..self.c_out {
                let v = dot4(&self.w[o * span..][..span], windows);
                for (t, v) in v.into_iter().enumerate() {
                    y[(t + 1) * self.c_out + o] = (self.b[o] + v).max(0.0);
                }
            }
            y[(len_out + 1) * self.c_out..][..self.c_out].fill(0.0);
            return len_out;
        }
        for t in 0..len_out {
            let window = &x[t * self.stride * self.c_in..][..span];
            let row = &mut y[(t + 1) * self.c_out..][..self.c_out];
            for (o, out) in row.iter_mut().enumerate() {
                *out = (self.b[o] + dot(&self.w[o * span..][..span], window)).max(0.0);
            }
        }
        y[(len_out + 1) * self.c_out..][..self.c_out].fill(0.0);
        len_out
    }
}

/// The network's weights: immutable, shared by every stream (one per call) through an `Arc`.
#[derive(Debug)]
pub struct SileroModel {
    basis: Vec<f32>,
    /// The same STFT through an FFT, when the basis is a windowed DFT (it is in Silero's files).
    fft: Option<FftStft>,
    convs: [Conv; 4],
    /// LSTM gates (i, f, g, o) x [input | hidden]: one dot product of length 256 per gate unit.
    lstm_w: Vec<f32>,
    lstm_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: f32,
}

fn fetch<'a>(t: &'a Tensors, names: (&str, &str, &[usize])) -> Result<&'a Tensor, MediaError> {
    let (canonical, onnx, shape) = names;
    let found = t.get(canonical).or_else(|| t.get(onnx));
    let tensor = found.ok_or_else(|| MediaError::InvalidWeights(format!("missing tensor {canonical} ({onnx})")))?;
    if tensor.shape != shape {
        return Err(MediaError::InvalidWeights(format!(
            "tensor {canonical} has shape {:?}, expected {shape:?}",
            tensor.shape
        )));
    }
    if tensor.data.iter().any(|v| !v.is_finite()) {
        return Err(MediaError::InvalidWeights(format!("tensor {canonical} holds NaN or infinite values")));
    }
    Ok(tensor)
}

impl SileroModel {
    /// Weights from the bytes of a `.safetensors` or `.onnx` file (told apart by content).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MediaError> {
        // safetensors opens with a u64 header length and then the JSON header's '{'.
        let tensors = if bytes.get(8) == Some(&b'{') { parse_safetensors(bytes)? } else { parse_onnx(bytes)? };
        Self::from_tensors(&tensors)
    }

    pub fn from_tensors(t: &Tensors) -> Result<Self, MediaError> {
        let g = |i: usize| fetch(t, TENSORS[i]);
        let convs = [Conv::new(g(1)?, g(2)?, 1), Conv::new(g(3)?, g(4)?, 2), Conv::new(g(5)?, g(6)?, 2), Conv::new(g(7)?, g(8)?, 1)];
        let (w_ih, w_hh, b_ih, b_hh) = (g(9)?, g(10)?, g(11)?, g(12)?);
        let mut lstm_w = Vec::with_capacity(4 * HIDDEN * 2 * HIDDEN);
        for r in 0..4 * HIDDEN {
            lstm_w.extend_from_slice(&w_ih.data[r * HIDDEN..][..HIDDEN]);
            lstm_w.extend_from_slice(&w_hh.data[r * HIDDEN..][..HIDDEN]);
        }
        let lstm_b = b_ih.data.iter().zip(&b_hh.data).map(|(a, b)| a + b).collect();
        let basis = g(0)?.data.clone();
        Ok(Self { fft: FftStft::from_basis(&basis, 1e-5), basis, convs, lstm_w, lstm_b, out_w: g(13)?.data.clone(), out_b: g(14)?.data[0] })
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// tanh through exp: libm's tanhf (via expm1f) took a third of the network's time; the absolute
/// error of this form stays near 1e-7, far below what the probabilities can show.
fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// One audio stream's state: the LSTM state, the 64-sample context and scratch buffers.
#[derive(Debug, Clone)]
pub struct SileroStream {
    model: Arc<SileroModel>,
    h: [f32; HIDDEN],
    c: [f32; HIDDEN],
    window: Vec<f32>,
    /// Time-major activations with one zero row before and after (the convs' padding).
    a: Vec<f32>,
    b: Vec<f32>,
    xh: [f32; 2 * HIDDEN],
}

impl SileroStream {
    pub fn new(model: Arc<SileroModel>) -> Self {
        let rows = (FRAMES + 2) * BINS.max(HIDDEN);
        Self {
            model,
            h: [0.0; HIDDEN],
            c: [0.0; HIDDEN],
            window: vec![0.0; CONTEXT + CHUNK + CONTEXT],
            a: vec![0.0; rows],
            b: vec![0.0; rows],
            xh: [0.0; 2 * HIDDEN],
        }
    }

    pub fn model(&self) -> &Arc<SileroModel> {
        &self.model
    }

    /// Whether the STFT runs through the FFT (else the direct strided convolution).
    pub fn uses_fft(&self) -> bool {
        self.model.fft.is_some()
    }

    /// Back to the state of a fresh stream (zero LSTM state and context).
    pub fn reset(&mut self) {
        self.h = [0.0; HIDDEN];
        self.c = [0.0; HIDDEN];
        self.window.fill(0.0);
    }

    /// Forgets the LSTM state but keeps the audio context (used after a long skipped silence).
    pub fn reset_state(&mut self) {
        self.h = [0.0; HIDDEN];
        self.c = [0.0; HIDDEN];
    }

    fn load(&mut self, chunk: &[i16]) {
        // The previous chunk's last 64 samples become this chunk's context.
        self.window.copy_within(CHUNK..CHUNK + CONTEXT, 0);
        for (d, &s) in self.window[CONTEXT..CONTEXT + CHUNK].iter_mut().zip(chunk) {
            *d = f32::from(s) / 32768.0;
        }
        let n = CONTEXT + CHUNK;
        for j in 0..CONTEXT {
            self.window[n + j] = self.window[n - 2 - j]; // reflect padding (edge not repeated)
        }
    }

    /// Keeps the context current for a chunk the network does not look at.
    pub fn skip(&mut self, chunk: &[i16; CHUNK]) {
        self.load(chunk);
    }

    /// STFT magnitudes, time-major into rows 1..=FRAMES of `a` (rows 0 and FRAMES + 1 are the
    /// first conv's zero padding).
    fn stft(&mut self, m: &SileroModel) {
        self.a[..BINS].fill(0.0);
        let frames: [&[f32]; FRAMES] = std::array::from_fn(|t| &self.window[t * HOP..][..WINDOW]);
        match &m.fft {
            Some(fft) => {
                for t in (0..FRAMES).step_by(2) {
                    let (lo, hi) = self.a[(t + 1) * BINS..][..2 * BINS].split_at_mut(BINS);
                    fft.magnitudes2(frames[t], frames[t + 1], lo, hi);
                }
            }
            None => {
                // The direct strided conv: each basis row read once for all four frames.
                for k in 0..BINS {
                    let re = dot4(&m.basis[k * WINDOW..][..WINDOW], frames);
                    let im = dot4(&m.basis[(k + BINS) * WINDOW..][..WINDOW], frames);
                    for t in 0..FRAMES {
                        self.a[(t + 1) * BINS + k] = (re[t] * re[t] + im[t] * im[t]).sqrt();
                    }
                }
            }
        }
        self.a[(FRAMES + 1) * BINS..][..BINS].fill(0.0);
    }

    /// Speech probability of one 32 ms chunk of 16 kHz audio; advances the LSTM state.
    pub fn predict(&mut self, chunk: &[i16; CHUNK]) -> f32 {
        self.load(chunk);
        let m = Arc::clone(&self.model);
        self.stft(&m);
        self.b[..HIDDEN].fill(0.0);
        let mut len = m.convs[0].forward(&self.a, FRAMES, &mut self.b);
        self.a[..HIDDEN].fill(0.0);
        len = m.convs[1].forward(&self.b, len, &mut self.a);
        len = m.convs[2].forward(&self.a, len, &mut self.b);
        len = m.convs[3].forward(&self.b, len, &mut self.a);
        debug_assert_eq!(len, 1);
        self.xh[..HIDDEN].copy_from_slice(&self.a[HIDDEN..2 * HIDDEN]);
        self.xh[HIDDEN..].copy_from_slice(&self.h);
        let row = |g: usize, j: usize| &m.lstm_w[(g * HIDDEN + j) * 2 * HIDDEN..][..2 * HIDDEN];
        let mut logit = m.out_b;
        for j in 0..HIDDEN {
            // The four gates of unit j in one pass over [x | h].
            let z = dot4(&self.xh, [row(0, j), row(1, j), row(2, j), row(3, j)]);
            let z: [f32; 4] = std::array::from_fn(|g| z[g] + m.lstm_b[g * HIDDEN + j]);
            let (i, f, g, o) = (sigmoid(z[0]), sigmoid(z[1]), tanh(z[2]), sigmoid(z[3]));
            self.c[j] = f * self.c[j] + i * g;
            self.h[j] = o * tanh(self.c[j]);
            logit += m.out_w[j] * self.h[j].max(0.0);
        }
        sigmoid(logit)
    }
}
