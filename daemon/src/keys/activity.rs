//! What verify learns about a key in memory between two flushes — the last-used time and the usage counts
//! by code — and the list of keys that have something to save.
//!
//! One [`Activity`] per key, shared by every snapshot of the key. The first verify of a key after a flush
//! puts the key's id on the [`ActiveKeys`] list (one flag check per verify, one short lock per key and
//! interval); the flusher takes the list, so a pass visits only the keys that were used since the last
//! one, never the whole index.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use keyward_protocol::{KeyId, VerifyCode};

use crate::keys::usage::UsageCell;

/// A key's in-memory activity.
#[derive(Debug, Default)]
pub struct Activity {
    /// Last successful verify, Unix seconds; 0 when never used.
    last_used: AtomicI64,
    /// The last-used time the store holds.
    last_used_saved: AtomicI64,
    /// Verifications by code, not yet in the store.
    pub usage: UsageCell,
    /// Whether the key is on the [`ActiveKeys`] list.
    listed: AtomicBool,
}

impl Activity {
    /// The activity of a key whose stored last-used time is `last_used`.
    pub fn new(last_used: Option<i64>) -> Activity {
        let at = last_used.unwrap_or(0);
        Activity { last_used: AtomicI64::new(at), last_used_saved: AtomicI64::new(at), ..Activity::default() }
    }

    /// Records a successful verify at `now`.
    pub fn touch(&self, now: i64) {
        self.last_used.fetch_max(now, Ordering::Relaxed);
    }

    /// The last successful verify, if any.
    pub fn last_used_at(&self) -> Option<i64> {
        Some(self.last_used.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// The last-used time if it moved since it was last saved.
    pub fn unsaved_last_used(&self) -> Option<i64> {
        let at = self.last_used.load(Ordering::Relaxed);
        (at > self.last_used_saved.load(Ordering::Relaxed)).then_some(at)
    }

    /// Notes that the store now holds `at`.
    pub fn mark_last_used_saved(&self, at: i64) {
        self.last_used_saved.fetch_max(at, Ordering::Relaxed);
    }

    /// Takes the key off the list, before its values are read: a verify from now on lists it again.
    pub fn unlist(&self) {
        self.listed.store(false, Ordering::Release);
    }
}

/// The ids of the keys used since the flusher last took the list; each id at most once.
#[derive(Debug, Default)]
pub struct ActiveKeys(Mutex<Vec<KeyId>>);

impl ActiveKeys {
    /// Counts a verify of key `id` answered with `code`, and lists the key if it is not listed yet.
    pub fn note(&self, id: &KeyId, activity: &Activity, code: VerifyCode) {
        activity.usage.count(code);
        self.list(id, activity);
    }

    /// Puts key `id` on the list unless it is there already.
    pub fn list(&self, id: &KeyId, activity: &Activity) {
        if activity.listed.load(Ordering::Relaxed) || activity.listed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.lock().push(id.clone());
    }

    /// Takes the list. The caller [unlists](Activity::unlist) each key before reading its values.
    pub fn take(&self) -> Vec<KeyId> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<KeyId>> {
        // A panic while pushing or swapping leaves a valid Vec.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::usage::slot;

    fn id(text: &str) -> KeyId {
        KeyId::parse(text).unwrap()
    }

    #[test]
    fn a_key_is_listed_once_until_taken_and_unlisted() {
        let (active, a, b) = (ActiveKeys::default(), Activity::new(None), Activity::new(Some(5)));
        active.note(&id("AAAAAAAAAAAA"), &a, VerifyCode::Valid);
        active.note(&id("AAAAAAAAAAAA"), &a, VerifyCode::Valid);
        active.note(&id("BBBBBBBBBBBB"), &b, VerifyCode::NotFound);
        assert_eq!(active.take(), vec![id("AAAAAAAAAAAA"), id("BBBBBBBBBBBB")]);
        assert_eq!(a.usage.pending()[slot(VerifyCode::Valid)], 2);
        active.note(&id("AAAAAAAAAAAA"), &a, VerifyCode::Valid);
        assert!(active.take().is_empty(), "still listed until the flusher unlists it");
        a.unlist();
        active.note(&id("AAAAAAAAAAAA"), &a, VerifyCode::Valid);
        assert_eq!(active.take(), vec![id("AAAAAAAAAAAA")]);
    }

    #[test]
    fn last_used_moves_forward_and_reports_what_is_unsaved() {
        let activity = Activity::new(Some(100));
        assert_eq!((activity.last_used_at(), activity.unsaved_last_used()), (Some(100), None));
        activity.touch(90);
        assert_eq!(activity.unsaved_last_used(), None, "never backwards");
        activity.touch(130);
        assert_eq!(activity.unsaved_last_used(), Some(130));
        activity.mark_last_used_saved(130);
        assert_eq!(activity.unsaved_last_used(), None);
        assert_eq!(Activity::new(None).last_used_at(), None);
    }
}
