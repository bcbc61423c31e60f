//! A map whose values are computed at most once per key, even when several
//! tasks ask for the same key at the same time: the first computes, the
//! others wait for its result. Used wherever work is keyed by content
//! (compiling a component, building a stage folder).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

/// Values computed once per key; a failed computation is retried by the next caller.
pub struct OnceMap<K, V> {
    cells: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for OnceMap<K, V> {
    fn default() -> Self {
        Self {
            cells: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> OnceMap<K, V> {
    /// The value for `key`, computing it with `init` unless it was already.
    pub async fn get_or_try_init<E, F>(&self, key: K, init: impl FnOnce() -> F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(cells.entry(key).or_default())
        };
        cell.get_or_try_init(init).await.cloned()
    }
}
