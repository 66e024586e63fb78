//! What the collector keeps in memory across its passes (the watcher's judged summaries, the
//! parsed crons): a cache, never the truth (a restart
//! forgets it, and the database tells the same again).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A map shared by a store's clones, forgotten wholesale past [`Memo::MAX`] entries (which
/// only happens when what it keeps keeps changing).
#[derive(Debug)]
pub(crate) struct Memo<K, V>(Arc<Mutex<HashMap<K, V>>>);

impl<K, V> Clone for Memo<K, V> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(HashMap::new())))
    }
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    const MAX: usize = 100_000;

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.lock().get(key).cloned()
    }

    pub(crate) fn insert_all(&self, entries: Vec<(K, V)>) {
        let mut map = self.lock();
        if map.len() + entries.len() > Self::MAX {
            map.clear();
        }
        map.extend(entries);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, V>> {
        // Consistent whatever a panicking holder did: each change is one call.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
