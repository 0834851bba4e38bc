//! Prefix and tag invalidation without stopping the world.
//!
//! An invalidation becomes a rule "entries matching this, written at or before version `cut`,
//! are gone": reads check the rules at once (so nothing invalidated is ever returned), and a
//! sweep over the slab, a bounded slice per `advance`, frees the matching entries and retires
//! the rule once it has covered every slot.

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Matcher {
    Prefix(Box<[u8]>),
    Tag(Box<[u8]>),
}

#[derive(Debug)]
struct Rule {
    matcher: Matcher,
    cut: u64,
    /// Slab length when the rule was made: only slots below it can hold entries it matches.
    slots: usize,
    /// Of those slots, how many the sweep must still visit.
    remaining: usize,
}

/// Rules at most this many stay pending; a further one first finishes the oldest.
pub(crate) const MAX_RULES: usize = 32;

/// The pending rules and the sweep cursor they share.
#[derive(Debug, Default)]
pub(crate) struct Invalidations {
    rules: Vec<Rule>,
    cursor: u32,
}

impl Invalidations {
    /// Whether no rule is pending (the fast path of every read).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Adds a rule over `slots` slab slots.
    pub fn add(&mut self, matcher: Matcher, cut: u64, slots: usize) {
        if slots == 0 {
            return;
        }
        self.rules.push(Rule {
            matcher,
            cut,
            slots,
            remaining: slots,
        });
    }

    /// Whether an entry with this key, version and tags is invalidated.
    #[inline]
    pub fn kills<T: AsRef<[u8]>>(&self, key: &[u8], version: u64, tags: &[T]) -> bool {
        self.rules.iter().any(|r| {
            version <= r.cut
                && match &r.matcher {
                    Matcher::Prefix(p) => key.starts_with(p),
                    Matcher::Tag(t) => tags.iter().any(|x| x.as_ref() == &t[..]),
                }
        })
    }

    /// The next `n` slots to sweep, in a slab of `slots` slots; advances the cursor and retires
    /// rules that have now seen every slot. Returns the range start and length.
    pub fn next_slice(&mut self, n: usize, slots: usize) -> (u32, usize) {
        if slots == 0 || self.rules.is_empty() {
            return (0, 0);
        }
        let start = if (self.cursor as usize) < slots {
            self.cursor
        } else {
            0
        };
        let len = n.min(slots - start as usize);
        self.cursor = start + len as u32;
        (start, len)
    }

    /// Records that slots `start..start + len` were swept and retires finished rules. Slots made
    /// after a rule do not count toward it: the cursor visits every older slot once per cycle.
    pub fn swept(&mut self, start: u32, len: usize) {
        let start = start as usize;
        for r in &mut self.rules {
            let covered = (start + len).min(r.slots).saturating_sub(start);
            r.remaining = r.remaining.saturating_sub(covered);
        }
        self.rules.retain(|r| r.remaining > 0);
    }

    /// Whether the rule list is full and the oldest rule should be finished now.
    pub fn is_full(&self) -> bool {
        self.rules.len() >= MAX_RULES
    }

    pub fn clear(&mut self) {
        *self = Invalidations::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_by_prefix_tag_and_version() {
        let mut inv = Invalidations::default();
        inv.add(Matcher::Prefix(b"user:".as_slice().into()), 10, 4);
        inv.add(Matcher::Tag(b"t1".as_slice().into()), 20, 4);
        assert!(inv.kills::<&[u8]>(b"user:1", 10, &[]));
        assert!(!inv.kills::<&[u8]>(b"user:1", 11, &[]));
        assert!(!inv.kills::<&[u8]>(b"item:1", 5, &[]));
        let tags: Vec<Box<[u8]>> = vec![b"t0".as_slice().into(), b"t1".as_slice().into()];
        assert!(inv.kills(b"item:1", 20, &tags));
        assert!(!inv.kills(b"item:1", 21, &tags));
    }

    #[test]
    fn rules_retire_after_a_full_sweep() {
        let mut inv = Invalidations::default();
        inv.add(Matcher::Prefix(Box::default()), 1, 10);
        assert_eq!(inv.next_slice(4, 10), (0, 4));
        inv.swept(0, 4);
        assert_eq!(inv.next_slice(4, 10), (4, 4));
        inv.swept(4, 4);
        assert_eq!(inv.next_slice(4, 10), (8, 2));
        inv.swept(8, 2);
        assert!(inv.is_empty());
    }

    #[test]
    fn slots_made_after_a_rule_do_not_count_toward_it() {
        let mut inv = Invalidations::default();
        // The cursor sits at slot 1 of a one-slot slab when the rule is made.
        inv.add(Matcher::Prefix(Box::default()), 1, 1);
        inv.cursor = 1;
        // A second slot appears; sweeping it must not retire the rule.
        assert_eq!(inv.next_slice(1, 2), (1, 1));
        inv.swept(1, 1);
        assert!(!inv.is_empty());
        assert_eq!(inv.next_slice(1, 2), (0, 1));
        inv.swept(0, 1);
        assert!(inv.is_empty());
    }
}
