//! Failover policy of cluster mode: which failures call for a map refresh and another attempt,
//! and the bounded backoff schedule between attempts.

use std::time::{Duration, Instant};

use ringcache_proto::ErrorKind;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::reply::Reply;

/// How often a request answered with a redirect is retried after refreshing the map.
pub(crate) const REDIRECT_RETRIES: usize = 3;
/// Most attempts after failures that call for failover, whatever the time budget.
pub(crate) const FAILOVER_ATTEMPTS: u32 = 16;
/// First pause between failover attempts; each next one doubles, up to [`BACKOFF_CAP`].
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(20);
/// Longest pause between failover attempts.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_millis(200);

/// Whether an error is a server's redirect (stale map, moved key, replica not caught up).
fn is_redirect(e: &ClientError) -> bool {
    matches!(e.server_kind(), Some(ErrorKind::Redirect { .. }))
}

/// Whether an error says the node may be gone (connection refused, reset, closed, timed out)
/// or the map names no primary: what a failover may cure.
fn needs_failover(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Connect { .. }
            | ClientError::Io { .. }
            | ClientError::Timeout { .. }
            | ClientError::NoPrimary { .. }
    )
}

/// The pauses between failover attempts: 20 ms, doubling up to 200 ms, while the time since
/// the first failure is within the budget and at most [`FAILOVER_ATTEMPTS`] times.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    attempts: u32,
    budget: Duration,
}

impl Backoff {
    /// A schedule allowing `budget` of retrying.
    pub(crate) fn new(budget: Duration) -> Self {
        Backoff {
            next: BACKOFF_START,
            attempts: 0,
            budget,
        }
    }

    /// The pause before the next attempt, `elapsed` after the first failure; `None` when the
    /// budget or the attempts are spent. A pause never ends past the budget.
    pub(crate) fn next_delay(&mut self, elapsed: Duration) -> Option<Duration> {
        if self.attempts >= FAILOVER_ATTEMPTS || elapsed >= self.budget {
            return None;
        }
        let pause = self.next.min(self.budget - elapsed);
        self.next = (self.next * 2).min(BACKOFF_CAP);
        self.attempts += 1;
        Some(pause)
    }
}

/// A [`Backoff`] on the clock, started by the first failure.
pub(crate) struct Failover {
    backoff: Backoff,
    since: Option<Instant>,
}

impl Failover {
    /// A budget of [`ClientConfig::failover_timeout`], not started yet.
    pub(crate) fn new(cfg: &ClientConfig) -> Self {
        Failover {
            backoff: Backoff::new(cfg.failover_timeout),
            since: None,
        }
    }

    /// The pause before the next attempt (the clock starts at the first call); `None` when no
    /// attempt is left.
    pub(crate) fn pause(&mut self) -> Option<Duration> {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.backoff.next_delay(since.elapsed())
    }

    /// Sleeps before the next attempt; `false` when no attempt is left.
    pub(crate) fn wait(&mut self) -> bool {
        match self.pause() {
            Some(d) => {
                std::thread::sleep(d);
                true
            }
            None => false,
        }
    }
}

/// The retry rounds of a batch of commands in cluster mode, without I/O: which commands to
/// send in each round, which of them may go to a replica, and after a round whether to pause
/// (failover) and refresh the map. The blocking and the async client drive it the same way:
///
/// while `todo()` is not empty: send those commands (`any(i)` says whether command `i` may go
/// to a replica; record with `sent`), then `settle()`, sleep its pause, refresh the map if it
/// asks, and `next_round(refreshed)`. `finish()` answers one result per command.
pub(crate) struct BatchRetry {
    results: Vec<Result<Reply, ClientError>>,
    any: Vec<bool>,
    redirects: Vec<usize>,
    on_replica: Vec<bool>,
    todo: Vec<usize>,
    redirected: Vec<usize>,
    again: Vec<usize>,
    failover: Failover,
}

/// What to do between two rounds of a [`BatchRetry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Sleep this long first (failover backoff).
    pub(crate) pause: Option<Duration>,
    /// Refresh the map before the next round.
    pub(crate) refresh: bool,
}

impl BatchRetry {
    /// The rounds of a batch whose commands are `ok` (planned) or not (their error stands).
    pub(crate) fn new<T>(cmds: &[Result<T, ClientError>], cfg: &ClientConfig) -> Self {
        BatchRetry {
            results: cmds
                .iter()
                .map(|c| match c {
                    Ok(_) => Err(ClientError::Protocol("no reply".into())),
                    Err(e) => Err(e.clone()),
                })
                .collect(),
            any: vec![true; cmds.len()],
            redirects: vec![0; cmds.len()],
            on_replica: vec![false; cmds.len()],
            todo: (0..cmds.len()).filter(|&i| cmds[i].is_ok()).collect(),
            redirected: Vec::new(),
            again: Vec::new(),
            failover: Failover::new(cfg),
        }
    }

    /// The commands to send this round, in order.
    pub(crate) fn todo(&self) -> &[usize] {
        &self.todo
    }

    /// Whether command `i` may be read from any member this round.
    pub(crate) fn any(&self, i: usize) -> bool {
        self.any[i]
    }

    /// Records command `i`'s result this round and whether it went to a replica.
    pub(crate) fn sent(&mut self, i: usize, r: Result<Reply, ClientError>, on_replica: bool) {
        self.results[i] = r;
        self.on_replica[i] = on_replica;
    }

    /// Decides, after a round, which commands go again and what comes first.
    pub(crate) fn settle(&mut self) -> Settled {
        let mut failed = Vec::new();
        self.again.clear();
        self.redirected.clear();
        for &i in &self.todo {
            match next_step(&self.results[i], self.on_replica[i], self.redirects[i]) {
                Next::Done => {}
                Next::Primary => {
                    self.any[i] = false;
                    self.again.push(i);
                }
                Next::Redirect => {
                    self.redirects[i] += 1;
                    self.redirected.push(i);
                }
                Next::Failover => failed.push(i),
            }
        }
        let pause = if failed.is_empty() {
            None
        } else {
            self.failover.pause()
        };
        if pause.is_none() {
            failed.clear();
        }
        self.again.append(&mut failed);
        Settled {
            pause,
            refresh: pause.is_some() || !self.redirected.is_empty(),
        }
    }

    /// Starts the next round. A failed map refresh sends the redirected commands no more
    /// (they would only be redirected again); the failed nodes' commands go again on the
    /// last map (the balancer may be down while the nodes serve).
    pub(crate) fn next_round(&mut self, refreshed: bool) {
        self.todo.clear();
        self.todo.append(&mut self.again);
        if refreshed {
            self.todo.append(&mut self.redirected);
        }
        self.todo.sort_unstable();
    }

    /// One result per command, in order.
    pub(crate) fn finish(self) -> Vec<Result<Reply, ClientError>> {
        self.results
    }
}

/// What to do after a request's attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Answer the result.
    Done,
    /// The read went to a replica that did not serve it: send it to the primary now.
    Primary,
    /// Redirected: refresh the map and send it again now.
    Redirect,
    /// The node failed or the group has no primary: wait, refresh the map and send it again.
    Failover,
}

/// Decides what follows an attempt answered `r`, sent to a replica or not, after `redirects`
/// redirects retried already.
pub(crate) fn next_step(
    r: &Result<Reply, ClientError>,
    on_replica: bool,
    redirects: usize,
) -> Next {
    match r {
        Ok(_) => Next::Done,
        Err(e) if on_replica && (is_redirect(e) || needs_failover(e)) => Next::Primary,
        Err(e) if is_redirect(e) && redirects < REDIRECT_RETRIES => Next::Redirect,
        Err(e) if needs_failover(e) => Next::Failover,
        Err(_) => Next::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_stays_within_budget() {
        let mut b = Backoff::new(Duration::from_secs(3));
        let mut elapsed = Duration::ZERO;
        let mut pauses = Vec::new();
        while let Some(d) = b.next_delay(elapsed) {
            pauses.push(d);
            elapsed += d + Duration::from_millis(1); // each attempt takes a little time
        }
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(&ms[..6], &[20, 40, 80, 160, 200, 200]);
        assert!(pauses.len() <= FAILOVER_ATTEMPTS as usize);
        assert!(pauses.iter().sum::<Duration>() <= Duration::from_secs(3));

        // The attempt count bounds a long budget; the budget bounds slow attempts.
        let mut b = Backoff::new(Duration::from_secs(3600));
        assert_eq!(
            std::iter::from_fn(|| b.next_delay(Duration::ZERO)).count(),
            FAILOVER_ATTEMPTS as usize
        );
        let mut b = Backoff::new(Duration::from_millis(100));
        assert_eq!(
            b.next_delay(Duration::from_millis(90)),
            Some(Duration::from_millis(10))
        );
        assert_eq!(b.next_delay(Duration::from_millis(100)), None);
        assert_eq!(
            Backoff::new(Duration::ZERO).next_delay(Duration::ZERO),
            None
        );
    }

    #[test]
    fn what_follows_an_attempt() {
        let io = || -> Result<Reply, ClientError> {
            Err(ClientError::Io {
                addr: "a".into(),
                source: std::io::ErrorKind::ConnectionReset.into(),
            })
        };
        let redirect = || -> Result<Reply, ClientError> {
            Err(ClientError::Server {
                kind: ErrorKind::Redirect { epoch: 2 },
                message: "not caught up".into(),
            })
        };
        let wrong = || -> Result<Reply, ClientError> {
            Err(ClientError::Server {
                kind: ErrorKind::WrongType,
                message: "x".into(),
            })
        };
        assert_eq!(next_step(&Ok(Reply::Ok), true, 0), Next::Done);
        assert_eq!(next_step(&redirect(), true, 0), Next::Primary);
        assert_eq!(next_step(&io(), true, 0), Next::Primary);
        assert_eq!(next_step(&redirect(), false, 0), Next::Redirect);
        assert_eq!(next_step(&redirect(), false, REDIRECT_RETRIES), Next::Done);
        assert_eq!(next_step(&io(), false, 0), Next::Failover);
        let none = Err(ClientError::NoPrimary { group: 4 });
        assert_eq!(next_step(&none, false, 0), Next::Failover);
        assert_eq!(next_step(&wrong(), true, 0), Next::Done);
        let proto = Err(ClientError::Protocol("bad".into()));
        assert_eq!(next_step(&proto, false, 0), Next::Done);
    }
}
