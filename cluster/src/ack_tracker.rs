//! Write acknowledgements: which replica links still owe an ack for which write, and when a
//! write has what its policy asks for (or can no longer get it).

use std::collections::VecDeque;

/// Identifies one replica link of a primary core.
pub type LinkId = u64;

/// A write waiting for its acks.
#[derive(Debug)]
struct PendingWrite<W> {
    seq: u64,
    /// Links that may still acknowledge (at most one per replica member).
    waiting: Vec<LinkId>,
    /// Acks still needed from `waiting`.
    need: usize,
    /// Links that must acknowledge whatever the policy (a range move's new owner).
    required: Vec<LinkId>,
    /// When it started waiting (ms).
    since: u64,
    waiter: W,
}

/// Counts acknowledgements per write: a write is done once `need` of the links it was sent to
/// and every one of its required links have acknowledged its sequence (acks are cumulative: a
/// link that acknowledges `s` holds everything it was sent up to `s`), or once too few of its
/// links remain to ever say so — a link that is gone from the map stops counting
/// ([`AckTracker::link_gone`]).
#[derive(Debug)]
pub struct AckTracker<W> {
    pending: VecDeque<PendingWrite<W>>,
}

impl<W> Default for AckTracker<W> {
    fn default() -> Self {
        AckTracker {
            pending: VecDeque::new(),
        }
    }
}

/// How a write waiting for acks ended.
#[derive(Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// It has the acks asked for.
    Acked,
    /// Its replicas left the group before acknowledging; fewer copies exist than asked for,
    /// but every live member holds it.
    Degraded,
}

impl<W> AckTracker<W> {
    /// Writes waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no write waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Registers write `seq`, sent to `links` at time `now`, needing `need` of them and every
    /// link of `required`. Returns the waiter back when nothing needs waiting for.
    pub fn add(
        &mut self,
        seq: u64,
        links: Vec<LinkId>,
        need: usize,
        required: Vec<LinkId>,
        waiter: W,
        now: u64,
    ) -> Option<W> {
        let need = need.min(links.len());
        if need == 0 && required.is_empty() {
            return Some(waiter);
        }
        self.pending.push_back(PendingWrite {
            seq,
            need,
            waiting: links,
            required,
            since: now,
            waiter,
        });
        None
    }

    /// The writes that have waited longer than `limit` ms at `now` (oldest first).
    pub fn timed_out(&mut self, now: u64, limit: u64) -> Vec<W> {
        let mut out = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|p| now.saturating_sub(p.since) > limit)
        {
            if let Some(p) = self.pending.pop_front() {
                out.push(p.waiter);
            }
        }
        out
    }

    /// `link` holds everything up to `seq`: returns the writes now done.
    pub fn ack(&mut self, link: LinkId, seq: u64) -> Vec<(W, AckOutcome)> {
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if p.seq > seq {
                break;
            }
            if let Some(pos) = p.waiting.iter().position(|&l| l == link) {
                p.waiting.swap_remove(pos);
                p.need = p.need.saturating_sub(1);
            }
            p.required.retain(|&l| l != link);
            if p.need == 0 && p.required.is_empty() {
                if let Some(p) = self.pending.remove(i) {
                    done.push((p.waiter, AckOutcome::Acked));
                }
            } else {
                i += 1;
            }
        }
        done
    }

    /// `link` will never acknowledge (its member left the map): returns the writes now done.
    pub fn link_gone(&mut self, link: LinkId) -> Vec<(W, AckOutcome)> {
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if let Some(pos) = p.waiting.iter().position(|&l| l == link) {
                p.waiting.swap_remove(pos);
                p.need = p.need.min(p.waiting.len());
            }
            p.required.retain(|&l| l != link);
            if p.need == 0 && p.required.is_empty() {
                if let Some(p) = self.pending.remove(i) {
                    done.push((p.waiter, AckOutcome::Degraded));
                }
            } else {
                i += 1;
            }
        }
        done
    }

    /// Every write still waiting (at shutdown or when the core stops being primary).
    pub fn drain(&mut self) -> impl Iterator<Item = W> + '_ {
        self.pending.drain(..).map(|p| p.waiter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writes_finish_on_enough_acks_or_when_their_links_go() {
        let mut t: AckTracker<&str> = AckTracker::default();
        assert_eq!(t.add(1, vec![7], 0, vec![], "one", 0), Some("one"));
        assert_eq!(t.add(1, vec![7, 8], 2, vec![], "a", 0), None);
        assert_eq!(t.add(2, vec![7, 8], 1, vec![], "b", 0), None);
        assert_eq!(t.add(3, vec![7, 8], 2, vec![], "c", 0), None);
        assert!(t.ack(7, 1).is_empty());
        assert_eq!(
            t.ack(8, 2),
            vec![("a", AckOutcome::Acked), ("b", AckOutcome::Acked)]
        );
        assert_eq!(t.link_gone(7), vec![]);
        assert_eq!(t.ack(8, 3), vec![("c", AckOutcome::Acked)]);
        assert_eq!(t.add(4, vec![7], 1, vec![], "d", 0), None);
        assert_eq!(t.link_gone(7), vec![("d", AckOutcome::Degraded)]);
        assert!(t.is_empty());
        // A required link must ack whatever the count.
        assert_eq!(t.add(9, vec![7], 0, vec![8], "r", 0), None);
        assert!(t.ack(7, 9).is_empty());
        assert_eq!(t.ack(8, 9), vec![("r", AckOutcome::Acked)]);
        t.add(5, vec![7], 1, vec![], "e", 100);
        t.add(6, vec![7], 1, vec![], "f", 200);
        assert!(t.timed_out(150, 100).is_empty());
        assert_eq!(t.timed_out(250, 100), vec!["e"]);
        assert_eq!(t.len(), 1);
    }

    proptest! {
        #[test]
        fn tracker_finishes_each_write_once(acks in proptest::collection::vec((0u64..3, 1u64..20), 0..60)) {
            let mut t: AckTracker<u64> = AckTracker::default();
            for seq in 1..20 {
                t.add(seq, vec![0, 1, 2], 2, vec![], seq, 0);
            }
            let mut seen = std::collections::HashSet::new();
            for (link, seq) in acks {
                for (w, _) in t.ack(link, seq) {
                    prop_assert!(seen.insert(w));
                }
            }
            for link in 0..3 {
                for (w, _) in t.link_gone(link) {
                    prop_assert!(seen.insert(w));
                }
            }
            prop_assert_eq!(seen.len(), 19);
            prop_assert!(t.is_empty());
        }
    }
}
