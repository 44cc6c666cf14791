//! The one hot loop of the model: f32 dot products. Every layer is laid out so that it is a
//! set of dot products over contiguous memory; AVX2+FMA is used when the CPU has it (checked
//! once at run time, so one build serves every x86-64 machine), otherwise a lane-parallel loop
//! that the compiler vectorises with baseline SSE.

use std::sync::OnceLock;

type DotFn = fn(&[f32], &[f32]) -> f32;
type Dot4Fn = fn(&[f32], [&[f32]; 4]) -> [f32; 4];

fn portable4(w: &[f32], xs: [&[f32]; 4]) -> [f32; 4] {
    xs.map(|x| portable(w, x))
}

fn portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The caller must have checked that the CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // Two accumulators hide the FMA latency; the tail is summed in scalar.
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), acc1);
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        let acc = _mm256_add_ps(acc0, acc1);
        let lo = _mm256_castps256_ps128(acc);
        let hi = _mm256_extractf128_ps(acc, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        let mut total = _mm_cvtss_f32(s);
        while i < n {
            total += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        total
    }

    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only selected by `pick` after the run-time feature check.
        unsafe { dot_avx2(a, b) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// One weight row against four inputs: each weight load feeds four FMAs.
    ///
    /// # Safety
    /// The caller must have checked that the CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot4_avx2(w: &[f32], xs: [&[f32]; 4]) -> [f32; 4] {
        let n = xs.iter().fold(w.len(), |n, x| n.min(x.len()));
        let pw = w.as_ptr();
        let p = xs.map(|x| x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 8 <= n {
            let wv = _mm256_loadu_ps(pw.add(i));
            for j in 0..4 {
                acc[j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p[j].add(i)), acc[j]);
            }
            i += 8;
        }
        let mut out = [0.0f32; 4];
        for j in 0..4 {
            out[j] = hsum(acc[j]);
            for k in i..n {
                out[j] += *pw.add(k) * *p[j].add(k);
            }
        }
        out
    }

    pub fn dot4(w: &[f32], xs: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: only selected by `pick4` after the run-time feature check.
        unsafe { dot4_avx2(w, xs) }
    }
}

fn pick() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        return x86::dot;
    }
    portable
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn pick4() -> Dot4Fn {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        return x86::dot4;
    }
    portable4
}

/// `w` against each of four inputs (over the shortest length of all five): one pass over `w`.
#[inline]
pub fn dot4(w: &[f32], xs: [&[f32]; 4]) -> [f32; 4] {
    static DOT4: OnceLock<Dot4Fn> = OnceLock::new();
    (DOT4.get_or_init(pick4))(w, xs)
}

/// Dot product of the common prefix of `a` and `b`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    static DOT: OnceLock<DotFn> = OnceLock::new();
    (DOT.get_or_init(pick))(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum_for_every_length() {
        for n in 0..70 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - want).abs() < 1e-4, "n={n}");
            assert!((portable(&a, &b) - want).abs() < 1e-4, "n={n}");
            let four = dot4(&a, [&b, &a, &b, &b]);
            let aa: f32 = a.iter().map(|x| x * x).sum();
            assert!((four[0] - want).abs() < 1e-4 && (four[3] - want).abs() < 1e-4, "n={n}");
            assert!((four[1] - aa).abs() < 1e-3, "n={n}");
        }
    }
}
