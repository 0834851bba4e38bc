//! Key, value and operation generation. Pure: no I/O, no clocks; every generator is seeded.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, ensure, Context};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// How keys are drawn from the key space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Zipf with exponent `s`: key index 0 is the most popular, index `i` has weight 1/(i+1)^s.
    Zipf(f64),
}

impl FromStr for KeyDist {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        if s == "uniform" {
            return Ok(KeyDist::Uniform);
        }
        if let Some(exp) = s.strip_prefix("zipf:") {
            let e: f64 = exp
                .parse()
                .with_context(|| format!("bad zipf exponent {exp:?} (expected e.g. zipf:0.99)"))?;
            ensure!(
                e.is_finite() && e >= 0.0,
                "zipf exponent must be a finite number >= 0, got {e}"
            );
            return Ok(KeyDist::Zipf(e));
        }
        bail!("unknown distribution {s:?}: use uniform or zipf:S (e.g. zipf:0.99)")
    }
}

impl fmt::Display for KeyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDist::Uniform => write!(f, "uniform"),
            KeyDist::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// Value sizes: a fixed size or a uniform range `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSize {
    /// Smallest value in bytes.
    pub min: usize,
    /// Largest value in bytes.
    pub max: usize,
}

impl FromStr for ValueSize {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let num = |t: &str| -> anyhow::Result<usize> {
            t.trim()
                .parse()
                .with_context(|| format!("bad value size {t:?} (expected N or MIN-MAX)"))
        };
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(s)?;
                (n, n)
            }
        };
        ensure!(min <= max, "value size range {min}-{max} is empty");
        ensure!(
            max <= 64 << 20,
            "value size {max} is over the 64 MiB the loadgen supports"
        );
        Ok(ValueSize { min, max })
    }
}

impl fmt::Display for ValueSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// The fixed-width key names of a key space: `key:000000042` padded with zeros to `key_size`.
///
/// When `key_size` is too short for the `key:` prefix the key is the zero-padded number alone;
/// a key size too short to tell all keys apart is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    keys: u64,
    key_size: usize,
    prefix: &'static [u8],
}

const PREFIX: &[u8] = b"key:";

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

impl KeySpace {
    /// A key space of `keys` keys, each exactly `key_size` bytes.
    pub fn new(keys: u64, key_size: usize) -> anyhow::Result<Self> {
        ensure!(keys > 0, "the key space needs at least one key");
        let need = digits(keys - 1);
        ensure!(
            key_size >= need,
            "key size {key_size} cannot hold {keys} distinct keys (needs at least {need} bytes)"
        );
        ensure!(
            key_size <= 250,
            "key size {key_size} is over 250 bytes (memcached's limit)"
        );
        let prefix = if key_size >= PREFIX.len() + need {
            PREFIX
        } else {
            &[]
        };
        Ok(KeySpace {
            keys,
            key_size,
            prefix,
        })
    }

    /// Number of keys.
    pub fn len(&self) -> u64 {
        self.keys
    }

    /// Always false: a key space has at least one key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes per key.
    pub fn key_size(&self) -> usize {
        self.key_size
    }

    /// Writes key `index` into `out` (exactly `key_size` bytes, resized if needed).
    pub fn write_key(&self, index: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(self.prefix);
        out.resize(self.key_size, b'0');
        let mut n = index;
        let mut at = self.key_size;
        while n > 0 && at > self.prefix.len() {
            at -= 1;
            out[at] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }

    /// Key `index` as a new vector.
    pub fn key(&self, index: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.key_size);
        self.write_key(index, &mut v);
        v
    }
}

/// What one operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Read a key.
    Get,
    /// Write a key with a value of `value_len` bytes.
    Set,
}

/// One generated operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// GET or SET.
    pub kind: OpKind,
    /// Index of the key in the key space.
    pub key: u64,
    /// Value length for a SET (0 for a GET).
    pub value_len: usize,
}

/// The workload parameters shared by all threads.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// Number of keys.
    pub keys: u64,
    /// Fraction of operations that are GETs, in `0.0..=1.0`.
    pub get_ratio: f64,
    /// Key popularity.
    pub dist: KeyDist,
    /// Value sizes of SETs.
    pub value_size: ValueSize,
}

/// A seeded stream of operations.
pub struct Generator {
    rng: SmallRng,
    spec: WorkloadSpec,
    zipf: Option<Zipf<f64>>,
}

impl Generator {
    /// A generator for `spec` seeded with `seed` (each thread passes its own seed).
    pub fn new(spec: WorkloadSpec, seed: u64) -> anyhow::Result<Self> {
        ensure!(spec.keys > 0, "the key space needs at least one key");
        ensure!(
            (0.0..=1.0).contains(&spec.get_ratio),
            "get ratio must be within 0..=1, got {}",
            spec.get_ratio
        );
        let zipf = match spec.dist {
            KeyDist::Uniform => None,
            KeyDist::Zipf(s) => Some(
                Zipf::new(spec.keys, s).map_err(|e| anyhow::anyhow!("zipf parameters: {e:?}"))?,
            ),
        };
        Ok(Generator {
            rng: SmallRng::seed_from_u64(seed),
            spec,
            zipf,
        })
    }

    /// The next key index.
    #[inline]
    pub fn next_key(&mut self) -> u64 {
        match &self.zipf {
            None => self.rng.gen_range(0..self.spec.keys),
            // Zipf yields ranks 1..=n as floats; rank 1 is key 0.
            Some(z) => (z.sample(&mut self.rng) as u64)
                .saturating_sub(1)
                .min(self.spec.keys - 1),
        }
    }

    /// The next value length.
    #[inline]
    pub fn next_value_len(&mut self) -> usize {
        let ValueSize { min, max } = self.spec.value_size;
        if min == max {
            min
        } else {
            self.rng.gen_range(min..=max)
        }
    }

    /// The next operation.
    #[inline]
    pub fn next_op(&mut self) -> Op {
        let is_get = self.spec.get_ratio >= 1.0 || self.rng.gen::<f64>() < self.spec.get_ratio;
        let key = self.next_key();
        if is_get {
            Op {
                kind: OpKind::Get,
                key,
                value_len: 0,
            }
        } else {
            Op {
                kind: OpKind::Set,
                key,
                value_len: self.next_value_len(),
            }
        }
    }
}

/// The bytes every value is sliced from: printable, no CR/LF, so any protocol carries it.
pub fn value_bytes(max: usize) -> Vec<u8> {
    (0..max).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The keys a thread prefills: `thread, thread + threads, ...` below `keys`.
#[derive(Debug, Clone)]
pub struct PrefillRange {
    next: u64,
    step: u64,
    end: u64,
}

impl PrefillRange {
    /// Thread `thread` of `threads` takes every `threads`-th key starting at `thread`.
    pub fn new(keys: u64, thread: usize, threads: usize) -> Self {
        PrefillRange {
            next: thread as u64,
            step: threads.max(1) as u64,
            end: keys,
        }
    }

    /// Keys left.
    pub fn remaining(&self) -> u64 {
        if self.next >= self.end {
            0
        } else {
            (self.end - self.next).div_ceil(self.step)
        }
    }
}

impl Iterator for PrefillRange {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.next >= self.end {
            return None;
        }
        let k = self.next;
        self.next += self.step;
        Some(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(keys: u64, dist: KeyDist, get_ratio: f64) -> WorkloadSpec {
        WorkloadSpec {
            keys,
            get_ratio,
            dist,
            value_size: ValueSize { min: 32, max: 32 },
        }
    }

    #[test]
    fn keys_are_fixed_width_and_distinct() {
        let ks = KeySpace::new(1_000_000, 16).unwrap();
        assert_eq!(ks.key(0), b"key:000000000000");
        assert_eq!(ks.key(42), b"key:000000000042");
        assert_eq!(ks.key(999_999), b"key:000000999999");
        // Too short for the prefix: digits only.
        let ks = KeySpace::new(1000, 5).unwrap();
        assert_eq!(ks.key(7), b"00007");
        let ks = KeySpace::new(1000, 3).unwrap();
        assert_eq!(ks.key(999), b"999");
        assert!(KeySpace::new(1001, 3).is_err());
        assert!(KeySpace::new(0, 16).is_err());
        let ks = KeySpace::new(10, 1).unwrap();
        assert_eq!(ks.key(9), b"9");
        let mut buf = b"leftover bytes that are long".to_vec();
        KeySpace::new(100, 8).unwrap().write_key(12, &mut buf);
        assert_eq!(buf, b"key:0012");
    }

    #[test]
    fn parse_flags() {
        assert_eq!("uniform".parse::<KeyDist>().unwrap(), KeyDist::Uniform);
        assert_eq!("zipf:0.99".parse::<KeyDist>().unwrap(), KeyDist::Zipf(0.99));
        assert!("zipf:".parse::<KeyDist>().is_err());
        assert!("zipf:-1".parse::<KeyDist>().is_err());
        assert!("pareto".parse::<KeyDist>().is_err());
        assert_eq!(
            "32".parse::<ValueSize>().unwrap(),
            ValueSize { min: 32, max: 32 }
        );
        assert_eq!(
            "10-100".parse::<ValueSize>().unwrap(),
            ValueSize { min: 10, max: 100 }
        );
        assert!("100-10".parse::<ValueSize>().is_err());
        assert!("x".parse::<ValueSize>().is_err());
        assert_eq!("10-100".parse::<ValueSize>().unwrap().to_string(), "10-100");
    }

    #[test]
    fn uniform_covers_the_key_space_evenly() {
        let keys = 100u64;
        let n = 200_000;
        let mut g = Generator::new(spec(keys, KeyDist::Uniform, 0.9), 1).unwrap();
        let mut counts = vec![0u32; keys as usize];
        for _ in 0..n {
            counts[g.next_key() as usize] += 1;
        }
        let expect = n as f64 / keys as f64; // 2000, sd ~45
        for (k, &c) in counts.iter().enumerate() {
            let dev = (c as f64 - expect).abs() / expect;
            assert!(dev < 0.10, "key {k}: {c} vs {expect}");
        }
        // A large space is covered end to end.
        let mut g = Generator::new(spec(1_000_000, KeyDist::Uniform, 0.9), 2).unwrap();
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[(g.next_key() / 100_000) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (9_000..11_000).contains(&b)),
            "{buckets:?}"
        );
    }

    #[test]
    fn zipf_top_one_percent_gets_the_expected_share() {
        let keys = 10_000u64;
        let s = 0.99;
        let h = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(s)).sum::<f64>();
        let expected = h(keys / 100) / h(keys); // about 0.55
        let n = 200_000;
        let mut g = Generator::new(spec(keys, KeyDist::Zipf(s), 0.9), 3).unwrap();
        let mut top = 0u32;
        let mut max = 0;
        for _ in 0..n {
            let k = g.next_key();
            assert!(k < keys);
            max = max.max(k);
            if k < keys / 100 {
                top += 1;
            }
        }
        let share = top as f64 / n as f64;
        assert!(
            (share - expected).abs() < 0.02,
            "top 1% share {share:.3}, expected {expected:.3}"
        );
        assert!(max > keys / 2, "the tail is reached too");
        // zipf:0 is uniform.
        let mut g = Generator::new(spec(keys, KeyDist::Zipf(0.0), 0.9), 3).unwrap();
        let top = (0..n).filter(|_| g.next_key() < keys / 100).count();
        assert!((top as f64 / n as f64 - 0.01).abs() < 0.003);
    }

    #[test]
    fn get_ratio_within_one_percent() {
        for ratio in [0.0, 0.5, 0.9, 1.0] {
            let mut g = Generator::new(spec(1000, KeyDist::Uniform, ratio), 4).unwrap();
            let n = 100_000;
            let gets = (0..n).filter(|_| g.next_op().kind == OpKind::Get).count();
            let got = gets as f64 / n as f64;
            assert!((got - ratio).abs() <= 0.01, "ratio {ratio}: got {got}");
        }
        assert!(Generator::new(spec(1000, KeyDist::Uniform, 1.5), 0).is_err());
    }

    #[test]
    fn value_sizes_stay_in_range_and_cover_it() {
        let mut s = spec(1000, KeyDist::Uniform, 0.0);
        s.value_size = ValueSize { min: 10, max: 20 };
        let mut g = Generator::new(s, 5).unwrap();
        let mut seen = [false; 21];
        for _ in 0..10_000 {
            let op = g.next_op();
            assert_eq!(op.kind, OpKind::Set);
            assert!((10..=20).contains(&op.value_len));
            seen[op.value_len] = true;
        }
        assert!(seen[10..=20].iter().all(|&b| b));
        let v = value_bytes(100);
        assert_eq!(v.len(), 100);
        assert!(v.iter().all(|b| b.is_ascii_lowercase()));
    }

    #[test]
    fn same_seed_same_stream() {
        let s = spec(1_000_000, KeyDist::Zipf(0.99), 0.9);
        let mut a = Generator::new(s.clone(), 9).unwrap();
        let mut b = Generator::new(s.clone(), 9).unwrap();
        let mut c = Generator::new(s, 10).unwrap();
        let va: Vec<Op> = (0..100).map(|_| a.next_op()).collect();
        let vb: Vec<Op> = (0..100).map(|_| b.next_op()).collect();
        let vc: Vec<Op> = (0..100).map(|_| c.next_op()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
    }

    #[test]
    fn prefill_ranges_partition_the_keys() {
        let mut all: Vec<u64> = (0..3).flat_map(|t| PrefillRange::new(10, t, 3)).collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(PrefillRange::new(10, 0, 3).remaining(), 4);
        assert_eq!(PrefillRange::new(10, 2, 3).remaining(), 3);
        assert_eq!(PrefillRange::new(2, 2, 3).remaining(), 0);
    }
}
