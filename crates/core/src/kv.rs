//! A key-value source and sink: what a cache loads from and writes through
//! to, what a store serves, what an L2 cache server is.

use std::future::Future;
use std::sync::Arc;

use crate::Result;

/// An asynchronous key-value store.
///
/// `kuai-cache` loads misses from one (read-through, cache-aside) and writes
/// to one (write-through, write-behind); `kuai-store` implements it over
/// PostgreSQL and its embedded backend; the cache's Redis L2 is one too.
///
/// `get` returns `Ok(None)` for a key that does not exist: absence is an
/// answer, not an error (negative caching depends on telling the two apart).
///
/// The futures are `Send` so stores work on multi-threaded runtimes. No async
/// runtime is assumed.
pub trait KvStore<K, V>: Send + Sync {
    /// Reads one key.
    fn get(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send;

    /// Writes one key.
    fn put(&self, key: K, value: V) -> impl Future<Output = Result<()>> + Send;

    /// Deletes one key; deleting a missing key is not an error.
    fn delete(&self, key: &K) -> impl Future<Output = Result<()>> + Send;

    /// Reads many keys; the answer is in the order of `keys`. The default
    /// calls [`get`](KvStore::get) one at a time; stores with a batch read
    /// override it.
    fn get_many(&self, keys: &[K]) -> impl Future<Output = Result<Vec<Option<V>>>> + Send
    where
        K: Sync,
        V: Send,
    {
        async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.get(key).await?);
            }
            Ok(out)
        }
    }
}

impl<K, V, S> KvStore<K, V> for Arc<S>
where
    S: KvStore<K, V> + ?Sized,
    K: Send + Sync,
    V: Send,
{
    fn get(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send {
        (**self).get(key)
    }
    fn put(&self, key: K, value: V) -> impl Future<Output = Result<()>> + Send {
        (**self).put(key, value)
    }
    fn delete(&self, key: &K) -> impl Future<Output = Result<()>> + Send {
        (**self).delete(key)
    }
    fn get_many(&self, keys: &[K]) -> impl Future<Output = Result<Vec<Option<V>>>> + Send
    where
        K: Sync,
        V: Send,
    {
        (**self).get_many(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    /// The smallest real store: a mutex-guarded map.
    #[derive(Default)]
    struct MapStore(Mutex<HashMap<u64, String>>);

    impl KvStore<u64, String> for MapStore {
        async fn get(&self, key: &u64) -> Result<Option<String>> {
            Ok(self
                .0
                .lock()
                .map_err(|_| crate::Error::closed("poisoned"))?
                .get(key)
                .cloned())
        }
        async fn put(&self, key: u64, value: String) -> Result<()> {
            self.0
                .lock()
                .map_err(|_| crate::Error::closed("poisoned"))?
                .insert(key, value);
            Ok(())
        }
        async fn delete(&self, key: &u64) -> Result<()> {
            self.0
                .lock()
                .map_err(|_| crate::Error::closed("poisoned"))?
                .remove(key);
            Ok(())
        }
    }

    /// Polls a future that never waits (our store never returns Pending).
    fn ready<F: Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => unreachable!("MapStore never pends"),
        }
    }

    #[test]
    fn get_put_delete_and_batch_through_arc() {
        let store = Arc::new(MapStore::default());
        assert_eq!(ready(store.get(&1)).ok(), Some(None));
        assert!(ready(store.put(1, "one".into())).is_ok());
        assert!(ready(store.put(3, "three".into())).is_ok());
        assert_eq!(ready(store.get(&1)).ok().flatten().as_deref(), Some("one"));
        let many = ready(store.get_many(&[1, 2, 3])).unwrap_or_default();
        assert_eq!(
            many,
            vec![Some("one".to_string()), None, Some("three".to_string())]
        );
        assert!(ready(store.delete(&1)).is_ok());
        assert!(
            ready(store.delete(&1)).is_ok(),
            "deleting a missing key is fine"
        );
        assert_eq!(ready(store.get(&1)).ok(), Some(None));
    }
}
