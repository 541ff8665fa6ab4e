//! [`Roster`]: the verify connections open now and when each last heard from its peer, so that when every
//! verify permit is taken and one more client knocks, the connection idle the longest can be asked to make
//! room.
//!
//! Idle verify connections live up to `idle_timeout` (300 s by default): without this, any local user
//! allowed on the verify socket could hold every permit with silent connections and keep app servers out
//! until they time out. Only a connection that has not heard from its peer for at least [`MIN_IDLE`] is
//! asked, and it closes only if it has nothing in flight and nothing half read when it hears the request;
//! otherwise it counts the request as news (so the next choice falls on another): a busy connection is
//! never cut off, and one that merely paused between two requests is not taken for an idle one.
//!
//! Cost on the verify path: one relaxed store per read from the socket (not per request), of a time the
//! connection reads anyway; the roster's lock is taken when a connection opens or closes and when room
//! must be made.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a connection must have been idle before it may be closed to make room.
pub const MIN_IDLE: Duration = Duration::from_secs(1);

/// The verify connections open now.
pub struct Roster {
    /// The roster's clock: idle times are milliseconds since this instant.
    epoch: Instant,
    next_id: AtomicU64,
    members: Mutex<HashMap<u64, Arc<Member>>>,
}

/// One connection's entry.
#[derive(Default)]
struct Member {
    /// When the connection last heard from its peer: milliseconds since the roster's epoch.
    last_heard: AtomicU64,
    /// Signalled when the connection is asked to close to make room.
    asked: Notify,
}

/// A connection's place on the roster; leaving it (dropping it) takes the connection off.
pub struct Membership {
    roster: Arc<Roster>,
    id: u64,
    member: Arc<Member>,
}

impl Roster {
    pub fn new() -> Arc<Roster> {
        Arc::new(Roster { epoch: Instant::now(), next_id: AtomicU64::new(0), members: Mutex::default() })
    }

    /// Puts a new connection on the roster, heard from now.
    pub fn join(self: &Arc<Self>) -> Membership {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let member = Arc::new(Member::default());
        member.last_heard.store(self.stamp(Instant::now()), Ordering::Relaxed);
        self.members().insert(id, member.clone());
        Membership { roster: self.clone(), id, member }
    }

    /// Asks the connection idle the longest (at least [`MIN_IDLE`]) to close; `false` when none qualifies.
    pub fn ask_longest_idle_to_leave(&self) -> bool {
        let Some(latest) = self.stamp(Instant::now()).checked_sub(MIN_IDLE.as_millis() as u64) else {
            return false;
        };
        let members = self.members();
        // Ties (connections heard from in the same millisecond) go to the one that joined first.
        let longest = members
            .iter()
            .map(|(id, member)| (member.last_heard.load(Ordering::Relaxed), *id, member))
            .filter(|&(heard, _, _)| heard <= latest)
            .min_by_key(|&(heard, id, _)| (heard, id));
        match longest {
            Some((_, _, member)) => {
                member.asked.notify_one();
                true
            }
            None => false,
        }
    }

    /// Open connections on the roster.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.members().len()
    }

    /// `at`, in milliseconds since the roster's epoch.
    fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn members(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Member>>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Membership {
    /// Records that the connection heard from its peer at `at`.
    pub fn heard(&self, at: Instant) {
        self.member.last_heard.store(self.roster.stamp(at), Ordering::Relaxed);
    }

    /// Completes when the connection is asked to make room.
    pub async fn asked_to_leave(&self) {
        self.member.asked.notified().await;
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.roster.members().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_connection_idle_longest_is_asked_and_one_heard_from_lately_never() {
        let roster = Roster::new();
        let oldest = roster.join();
        tokio::time::advance(Duration::from_millis(10)).await;
        let talking = roster.join();
        assert!(!roster.ask_longest_idle_to_leave(), "nobody has been idle for MIN_IDLE yet");
        tokio::time::advance(MIN_IDLE * 2).await;
        talking.heard(Instant::now());
        let _fresh = roster.join();
        assert!(roster.ask_longest_idle_to_leave());
        tokio::time::timeout(Duration::from_millis(1), oldest.asked_to_leave()).await.expect("the oldest was asked");
        oldest.heard(Instant::now());
        assert!(!roster.ask_longest_idle_to_leave(), "all three were heard from lately");
        drop(oldest);
        assert_eq!(roster.len(), 2);
    }
}
