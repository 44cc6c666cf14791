//! The model's STFT layer through an FFT, used when the file's conv basis is what it looks like:
//! a window times the DFT's cos and sin rows (checked at load; otherwise the model keeps the
//! direct strided convolution). Two real frames share one complex 256-point FFT.

const N: usize = 256;
pub const BINS: usize = N / 2 + 1;

#[derive(Debug, Clone)]
pub struct FftStft {
    window: Vec<f32>,
    tw_re: Vec<f32>,
    tw_im: Vec<f32>,
    bitrev: Vec<usize>,
}

impl FftStft {
    /// `basis`: [2 * BINS][N] (real rows, then imaginary rows). `None` unless every row equals
    /// window * cos (real) and -/+ window * sin (imaginary) within `tol`, the window being row 0.
    pub fn from_basis(basis: &[f32], tol: f64) -> Option<Self> {
        if basis.len() != 2 * BINS * N {
            return None;
        }
        let window: Vec<f32> = basis[..N].to_vec();
        let mut sign_err = [0.0f64; 2];
        for k in 0..BINS {
            for n in 0..N {
                let angle = 2.0 * std::f64::consts::PI * ((k * n) % N) as f64 / N as f64;
                let w = f64::from(window[n]);
                if (f64::from(basis[k * N + n]) - w * angle.cos()).abs() > tol {
                    return None;
                }
                let im = f64::from(basis[(BINS + k) * N + n]);
                sign_err[0] = sign_err[0].max((im + w * angle.sin()).abs());
                sign_err[1] = sign_err[1].max((im - w * angle.sin()).abs());
            }
        }
        if sign_err[0] > tol && sign_err[1] > tol {
            return None; // the magnitude ignores the sign, so either convention is the DFT
        }
        let angles = (0..N / 2).map(|m| 2.0 * std::f64::consts::PI * m as f64 / N as f64);
        let bits = N.trailing_zeros();
        Some(Self {
            window,
            tw_re: angles.clone().map(|a| a.cos() as f32).collect(),
            tw_im: angles.map(|a| -a.sin() as f32).collect(),
            bitrev: (0..N).map(|i| i.reverse_bits() >> (usize::BITS - bits)).collect(),
        })
    }

    fn fft(&self, re: &mut [f32; N], im: &mut [f32; N]) {
        for i in 0..N {
            let j = self.bitrev[i];
            if j > i {
                re.swap(i, j);
                im.swap(i, j);
            }
        }
        let mut len = 2;
        while len <= N {
            let (half, step) = (len / 2, N / len);
            for start in (0..N).step_by(len) {
                for j in 0..half {
                    let (wr, wi) = (self.tw_re[j * step], self.tw_im[j * step]);
                    let (a, b) = (start + j, start + j + half);
                    let tr = re[b] * wr - im[b] * wi;
                    let ti = re[b] * wi + im[b] * wr;
                    re[b] = re[a] - tr;
                    im[b] = im[a] - ti;
                    re[a] += tr;
                    im[a] += ti;
                }
            }
            len *= 2;
        }
    }

    /// Magnitudes of two windowed real frames: `out_x[k] = |X_k|`, `out_y[k] = |Y_k|`.
    pub fn magnitudes2(&self, x: &[f32], y: &[f32], out_x: &mut [f32], out_y: &mut [f32]) {
        let mut re = [0.0f32; N];
        let mut im = [0.0f32; N];
        for n in 0..N {
            re[n] = x[n] * self.window[n];
            im[n] = y[n] * self.window[n];
        }
        self.fft(&mut re, &mut im);
        // z = x + i y: X_k = (Z_k + conj Z_{N-k}) / 2, Y_k = (Z_k - conj Z_{N-k}) / 2i.
        for k in 0..BINS {
            let m = (N - k) % N;
            let (a, b, c, d) = (re[k], im[k], re[m], im[m]);
            out_x[k] = 0.5 * ((a + c) * (a + c) + (b - d) * (b - d)).sqrt();
            out_y[k] = 0.5 * ((a - c) * (a - c) + (b + d) * (b + d)).sqrt();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hann_basis(sign: f64) -> Vec<f32> {
        let mut b = vec![0.0f32; 2 * BINS * N];
        for k in 0..BINS {
            for n in 0..N {
                let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N as f64).cos();
                let a = 2.0 * std::f64::consts::PI * (k * n) as f64 / N as f64;
                b[k * N + n] = (w * a.cos()) as f32;
                b[(BINS + k) * N + n] = (sign * w * a.sin()) as f32;
            }
        }
        b
    }

    #[test]
    fn fft_magnitudes_equal_the_direct_basis_products() {
        for sign in [-1.0, 1.0] {
            let basis = hann_basis(sign);
            let stft = FftStft::from_basis(&basis, 1e-5).expect("a Hann DFT basis");
            let x: Vec<f32> = (0..N).map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 0.3).collect();
            let y: Vec<f32> = (0..N).map(|i| (i as f32 * 0.21).sin() * 0.7).collect();
            let (mut mx, mut my) = (vec![0.0; BINS], vec![0.0; BINS]);
            stft.magnitudes2(&x, &y, &mut mx, &mut my);
            for k in 0..BINS {
                for (sig, got) in [(&x, mx[k]), (&y, my[k])] {
                    let re: f32 = (0..N).map(|n| basis[k * N + n] * sig[n]).sum();
                    let im: f32 = (0..N).map(|n| basis[(BINS + k) * N + n] * sig[n]).sum();
                    assert!((got - (re * re + im * im).sqrt()).abs() < 1e-4, "k={k}");
                }
            }
        }
    }

    #[test]
    fn any_other_basis_keeps_the_direct_convolution() {
        let mut basis = hann_basis(-1.0);
        basis[5 * N + 17] += 0.01;
        assert!(FftStft::from_basis(&basis, 1e-5).is_none());
        assert!(FftStft::from_basis(&basis[1..], 1e-5).is_none());
    }
}
