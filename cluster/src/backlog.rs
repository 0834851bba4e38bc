//! A primary core's replication backlog: its latest operations, each encoded once, under a byte
//! bound, so a replica back from a short outage is sent only what it missed.

use std::collections::VecDeque;

/// A primary core's bounded record of its latest operations, each encoded once, so a replica
/// back from a short outage gets only what it missed. Invariant: sequences are consecutive,
/// `first()..next()`, and `bytes` is the sum of the held records' lengths.
#[derive(Debug, Default)]
pub struct Backlog<R> {
    records: VecDeque<(u64, R)>,
    next: u64,
    bytes: usize,
    limit: usize,
}

impl<R: AsRef<[u8]>> Backlog<R> {
    /// An empty backlog holding at most `limit` bytes, whose first sequence will be 1.
    pub fn new(limit: usize) -> Self {
        Backlog {
            records: VecDeque::new(),
            next: 1,
            bytes: 0,
            limit,
        }
    }

    /// The sequence the next record gets.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The oldest sequence held (`next()` when empty).
    pub fn first(&self) -> u64 {
        self.records.front().map_or(self.next, |(s, _)| *s)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes the next sequence for `record`, dropping the oldest records over the limit.
    pub fn push(&mut self, record: R) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.bytes += record.as_ref().len();
        self.records.push_back((seq, record));
        while self.bytes > self.limit {
            match self.records.pop_front() {
                Some((_, r)) => self.bytes -= r.as_ref().len(),
                None => break,
            }
        }
        seq
    }

    /// The records from sequence `from` on, oldest first.
    pub fn since(&self, from: u64) -> impl Iterator<Item = &(u64, R)> {
        let skip = from.saturating_sub(self.first()) as usize;
        self.records.iter().skip(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_keeps_the_newest_records_within_its_limit() {
        let mut b: Backlog<Vec<u8>> = Backlog::new(10);
        for i in 0..6u8 {
            assert_eq!(b.push(vec![i; 3]), u64::from(i) + 1);
        }
        assert!(b.bytes() <= 10);
        assert_eq!(b.first(), 4);
        assert_eq!(b.next(), 7);
        let seqs: Vec<u64> = b.since(5).map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![5, 6]);
        assert_eq!(b.since(1).count(), 3);
    }
}
