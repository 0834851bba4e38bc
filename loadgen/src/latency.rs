//! Latency recording and open-loop scheduling. Pure: times are nanoseconds handed in by the
//! caller, so the accounting is tested without sockets or sleeps.
//!
//! Closed loop: a request's latency runs from when it was written to when its reply was read.
//! Open loop: requests are due at fixed intervals (`Schedule`) and a request's latency runs from
//! when it was *due*, not when it could finally be sent; a server stall that holds back the
//! requests behind it therefore shows up in every one of them (no coordinated omission).

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency recorded: one hour in nanoseconds (longer ones are clamped).
pub const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// A latency histogram in nanoseconds (3 significant digits).
#[derive(Clone, Debug)]
pub struct LatencyHist {
    h: Histogram<u64>,
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

/// The figures reported for a histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Mean latency.
    pub mean_us: f64,
    /// Smallest latency.
    pub min_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// 99.99th percentile.
    pub p9999_us: f64,
    /// Largest latency.
    pub max_us: f64,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl LatencyHist {
    /// An empty histogram covering 1 ns to one hour.
    pub fn new() -> Self {
        LatencyHist {
            // The bounds are constants that hdrhistogram accepts.
            h: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .unwrap_or_else(|_| unreachable!("valid histogram bounds")),
        }
    }

    /// Records one latency (clamped into 1 ns ..= one hour).
    #[inline]
    pub fn record(&mut self, latency_ns: u64) {
        let v = latency_ns.clamp(1, MAX_LATENCY_NS);
        // Cannot fail: the value is within the bounds and auto-resize is off.
        let _ = self.h.record(v);
    }

    /// Records the latency of a request due at `intended_ns` and answered at `done_ns`.
    #[inline]
    pub fn record_since(&mut self, intended_ns: u64, done_ns: u64) {
        self.record(done_ns.saturating_sub(intended_ns));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHist) {
        // Same bounds on both sides: cannot fail.
        let _ = self.h.add(&other.h);
    }

    /// Forgets every sample.
    pub fn reset(&mut self) {
        self.h.reset();
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.h.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    /// The latency at quantile `q` (0.0..=1.0), in nanoseconds.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        self.h.value_at_quantile(q)
    }

    /// Largest sample in nanoseconds.
    pub fn max_ns(&self) -> u64 {
        self.h.max()
    }

    /// Number of samples strictly above `ns` (approximately, at the histogram's resolution).
    pub fn count_above(&self, ns: u64) -> u64 {
        self.h.len() - self.h.count_between(0, ns)
    }

    /// The reported figures.
    pub fn summary(&self) -> LatencySummary {
        if self.h.is_empty() {
            return LatencySummary::default();
        }
        let q = |x| us(self.h.value_at_quantile(x));
        LatencySummary {
            count: self.h.len(),
            mean_us: self.h.mean() / 1000.0,
            min_us: us(self.h.min()),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            p9999_us: q(0.9999),
            max_us: us(self.h.max()),
        }
    }

    /// Percentile curve points `(percentile, latency_us)`, from 0 up to the maximum, spaced
    /// evenly on the "nines" scale (`ticks_per_half` points per halving of the remainder).
    pub fn percentile_curve(&self, ticks_per_half: u32) -> Vec<(f64, f64)> {
        if self.h.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<(f64, f64)> = self
            .h
            .iter_quantiles(ticks_per_half.max(1))
            .map(|v| (v.percentile(), us(v.value_iterated_to())))
            .collect();
        out.dedup_by(|b, a| a.0 == b.0);
        // Bucket edges can make the last step dip below its neighbour; a percentile curve
        // never falls.
        let mut top = 0.0f64;
        for p in &mut out {
            top = top.max(p.1);
            p.1 = top;
        }
        out
    }
}

/// Fixed-rate schedule of an open-loop run: request `i` is due at `start + i / rate`.
///
/// Requests that are due but not yet sent form a backlog (`backlog`); it is kept as a count,
/// since due times are computed from the index, so a long stall costs no memory.
#[derive(Clone, Debug)]
pub struct Schedule {
    start_ns: u64,
    interval_ns: f64,
    next: u64,
    limit: Option<u64>,
}

impl Schedule {
    /// `rate` requests per second from `start_ns` on, at most `limit` in all.
    pub fn new(start_ns: u64, rate: f64, limit: Option<u64>) -> Self {
        Schedule {
            start_ns,
            interval_ns: 1e9 / rate.max(1e-9),
            next: 0,
            limit,
        }
    }

    /// When request `i` is due.
    #[inline]
    pub fn due_time(&self, i: u64) -> u64 {
        self.start_ns + (i as f64 * self.interval_ns) as u64
    }

    /// Whether every request of the limit has been taken.
    pub fn exhausted(&self) -> bool {
        self.limit.is_some_and(|l| self.next >= l)
    }

    /// When the next request not yet taken is due (`None` once the limit is reached).
    pub fn next_due(&self) -> Option<u64> {
        (!self.exhausted()).then(|| self.due_time(self.next))
    }

    /// Takes the next request if it is due at `now_ns`, returning its due time.
    #[inline]
    pub fn take_due(&mut self, now_ns: u64) -> Option<u64> {
        let t = self.next_due()?;
        if t <= now_ns {
            self.next += 1;
            Some(t)
        } else {
            None
        }
    }

    /// Requests due at `now_ns` and not yet taken.
    pub fn backlog(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        let due = ((now_ns - self.start_ns) as f64 / self.interval_ns) as u64 + 1;
        let due = self.limit.map_or(due, |l| due.min(l));
        due.saturating_sub(self.next)
    }

    /// Requests taken so far.
    pub fn taken(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    const MS: u64 = 1_000_000;
    const US: u64 = 1_000;

    #[test]
    fn summary_in_microseconds() {
        let mut h = LatencyHist::new();
        for i in 1..=1000u64 {
            h.record(i * US);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.0, "{s:?}");
        assert!((s.mean_us - 500.5).abs() < 1.0, "{s:?}");
        let mut other = LatencyHist::new();
        other.record(u64::MAX);
        other.record(0);
        h.merge(&other);
        assert_eq!(h.len(), 1002);
        assert!(h.max_ns() >= MAX_LATENCY_NS);
        assert_eq!(LatencyHist::new().summary(), LatencySummary::default());
        let curve = h.percentile_curve(5);
        assert!(curve.len() > 10);
        assert!(curve
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn schedule_is_fixed_rate_with_a_limit() {
        let mut s = Schedule::new(10 * MS, 1000.0, Some(5));
        assert_eq!(s.take_due(0), None);
        assert_eq!(s.backlog(0), 0);
        assert_eq!(s.backlog(10 * MS), 1);
        assert_eq!(s.backlog(13 * MS + 1), 4);
        assert_eq!(s.take_due(13 * MS), Some(10 * MS));
        assert_eq!(s.take_due(13 * MS), Some(11 * MS));
        assert_eq!(s.backlog(100 * MS), 3, "capped by the limit");
        assert_eq!(s.next_due(), Some(12 * MS));
        while s.take_due(100 * MS).is_some() {}
        assert!(s.exhausted());
        assert_eq!(s.taken(), 5);
        assert_eq!(s.next_due(), None);
    }

    /// One connection, one request in flight at a time (pipeline 1), a server that answers in
    /// 50 µs except during a stall, when nothing is answered until the stall ends.
    fn simulate(open_loop_accounting: bool) -> LatencyHist {
        let stall = (200 * MS, 300 * MS);
        let service = 50 * US;
        let mut sched = Schedule::new(0, 1000.0, None); // every 1 ms
        let mut hist = LatencyHist::new();
        let mut backlog: VecDeque<u64> = VecDeque::new();
        // (due time, send time, completion time) of the request in flight.
        let mut in_flight: Option<(u64, u64, u64)> = None;
        let mut now = 0;
        while now <= 1000 * MS {
            if let Some((due, sent, done)) = in_flight {
                if done <= now {
                    hist.record_since(if open_loop_accounting { due } else { sent }, done);
                    in_flight = None;
                }
            }
            while let Some(t) = sched.take_due(now) {
                backlog.push_back(t);
            }
            if in_flight.is_none() {
                if let Some(due) = backlog.pop_front() {
                    let mut done = now + service;
                    if (stall.0..stall.1).contains(&now) || (stall.0..stall.1).contains(&done) {
                        done = stall.1 + service;
                    }
                    in_flight = Some((due, now, done));
                }
            }
            now += 10 * US;
        }
        hist
    }

    #[test]
    fn open_loop_stall_shows_in_every_delayed_request() {
        let h = simulate(true);
        let max = h.max_ns();
        assert!(
            (95 * MS..=102 * MS).contains(&max),
            "worst latency {} ms",
            max / MS
        );
        // Requests due during the stall waited for it: about 100 of them, from ~100 ms down.
        let delayed = h.count_above(10 * MS);
        assert!((80..=100).contains(&delayed), "{delayed} delayed requests");
        assert!(h.count_above(50 * MS) >= 40);
        assert!(h.quantile_ns(0.99) > 50 * MS, "p99 {}", h.quantile_ns(0.99));
        // Measured from the send time, the same run hides the stall behind a single sample.
        let naive = simulate(false);
        assert_eq!(naive.count_above(10 * MS), 1);
        assert!(naive.quantile_ns(0.99) < MS);
    }
}
