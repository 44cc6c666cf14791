//! Relative transit statistics for the jitter buffer's adaptive target.

use std::collections::VecDeque;

const WINDOW: usize = 500;
const QUANTILE: f64 = 0.97;

/// Relative transit (arrival minus media time): sliding-window minimum and upper quantile, and
/// the RFC 3550 interarrival jitter.
#[derive(Debug, Clone, Default)]
pub(super) struct Estimator {
    pub(super) window: VecDeque<f64>,
    pub(super) jitter: f64,
    last: Option<f64>,
    cache: Option<(f64, f64)>,
}

impl Estimator {
    pub(super) fn add(&mut self, transit: f64, discontinuity_ms: f64) {
        if self.stats().is_some_and(|(base, _)| (transit - base).abs() > discontinuity_ms) {
            *self = Self::default();
        }
        if let Some(prev) = self.last {
            self.jitter += ((transit - prev).abs() - self.jitter) / 16.0;
        }
        self.last = Some(transit);
        if self.window.len() == WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(transit);
        self.cache = None;
    }

    /// (base, spread): the window minimum and the `QUANTILE` of transit above it.
    pub(super) fn stats(&mut self) -> Option<(f64, f64)> {
        if self.cache.is_none() && !self.window.is_empty() {
            let mut v: Vec<f64> = self.window.iter().copied().collect();
            let base = v.iter().copied().fold(f64::INFINITY, f64::min);
            let k = ((v.len() - 1) as f64 * QUANTILE).round() as usize;
            let (_, q, _) = v.select_nth_unstable_by(k, f64::total_cmp);
            self.cache = Some((base, *q - base));
        }
        self.cache
    }
}
