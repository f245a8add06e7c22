//! A credential cache that renews: one value per key, fetched by one task at a time (others
//! wait for its answer instead of asking the token service too), kept until shortly before it
//! expires, and fetched again when a registry refused it: when the value the caller was
//! refused is still the cached one (whoever comes after a renewal gets the new value).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long a credential that says it lives `lifetime` is used: until `margin` before it
/// expires, but never less than three quarters of its life (a 5-minute token with a 15-minute
/// margin is still used for almost 4 minutes), and at least [`FLOOR`] (a token that arrives
/// already expired by our clock is used briefly; a registry that refuses it makes us ask again).
pub(crate) fn fresh_for(lifetime: Duration, margin: Duration) -> Duration {
    lifetime.saturating_sub(margin.min(lifetime / 4)).max(FLOOR)
}

/// The shortest time a fetched credential is used before asking again.
pub(crate) const FLOOR: Duration = Duration::from_secs(30);

struct Slot<V> {
    value: V,
    until: Instant,
}

/// Values by key, each renewed when stale or on demand.
pub(crate) struct Renewing<V> {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Slot<V>>>>>>,
    fetches: AtomicU64,
}

impl<V> Default for Renewing<V> {
    fn default() -> Self {
        Self { slots: Mutex::new(HashMap::new()), fetches: AtomicU64::new(0) }
    }
}

impl<V: Clone> Renewing<V> {
    /// The value for `key`: cached if fresh and not `refused`, else from `fetch`, which
    /// returns the value and how long to use it.
    pub(crate) async fn get<E, F, Fut>(
        &self,
        key: &str,
        refused: impl FnOnce(&V) -> bool,
        fetch: F,
    ) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Duration), E>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key.to_owned()).or_default().clone()
        };
        // Held across the fetch: whoever comes next waits for this answer.
        let mut guard = slot.lock().await;
        let now = Instant::now();
        if let Some(current) = guard.as_ref()
            && current.until > now
            && !refused(&current.value)
        {
            return Ok(current.value.clone());
        }
        let (value, valid_for) = fetch().await?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        *guard = Some(Slot { value: value.clone(), until: Instant::now() + valid_for });
        Ok(value)
    }

    /// How many times a value was fetched.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

impl Renewing<Option<ferry_registry::auth::Credential>> {
    /// A registry credential for `key`, fetched again when it is the one the registry
    /// `refused`.
    pub(crate) async fn credential<E, F, Fut>(
        &self,
        key: &str,
        refused: Option<&ferry_registry::auth::Credential>,
        fetch: F,
    ) -> Result<Option<ferry_registry::auth::Credential>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Option<ferry_registry::auth::Credential>, Duration), E>>,
    {
        self.get(key, |cached| refused.is_some() && cached.as_ref() == refused, fetch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_keeps_a_margin_but_most_of_a_short_life() {
        let m = Duration::from_secs;
        for (lifetime, margin, expected) in [
            (m(12 * 3600), m(15 * 60), m(12 * 3600 - 15 * 60)),
            (m(3600), m(300), m(3300)),
            (m(300), m(900), m(225)),
            (m(0), m(300), FLOOR),
            (m(20), m(300), FLOOR),
        ] {
            assert_eq!(fresh_for(lifetime, margin), expected, "{lifetime:?} {margin:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_askers_share_one_fetch_and_one_renewal() {
        let cache: Arc<Renewing<u32>> = Arc::default();
        let calls = Arc::new(AtomicU64::new(0));
        let fetch = |calls: Arc<AtomicU64>| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let n = calls.fetch_add(1, Ordering::Relaxed) as u32;
            Ok::<_, ()>((n, Duration::from_secs(60)))
        };
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move { cache.get("k", |_| false, || fetch(calls)).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(0));
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        // Eight callers refused value 0 at once: the first renews, the rest get its value.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move { cache.get("k", |v| *v == 0, || fetch(calls)).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(1));
        }
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        // Stale values are fetched again.
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(cache.get("k", |_| false, || fetch(calls.clone())).await, Ok(2));
        assert_eq!(cache.get("other", |_| false, || fetch(calls.clone())).await, Ok(3));
        assert_eq!(cache.fetches(), 4);
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_nothing() {
        let cache: Renewing<u32> = Renewing::default();
        assert_eq!(
            cache.get("k", |_| false, || async { Err::<(u32, Duration), _>("down") }).await,
            Err("down")
        );
        assert_eq!(
            cache.get("k", |_| false, || async { Ok::<_, ()>((7, Duration::from_secs(60))) }).await,
            Ok(7)
        );
    }
}
