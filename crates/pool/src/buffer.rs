//! A size-classed pool of `BytesMut` buffers with a per-thread cache in front
//! of a sharded shared free list, and a hard cap on pooled memory.
//!
//! # How memory is accounted
//!
//! `charged` counts the bytes in the shared lists plus the budget *leased* to
//! each thread's cache. A thread cache only holds buffers within its lease;
//! it grows the lease (one CAS on `charged`, rarely) up to
//! `thread_cache_bytes`, and hands it back when the thread exits. So
//! `charged <= max_pooled_bytes` always holds, and the hot path (a hit in the
//! thread cache, a put into it) touches no shared cache line.

use std::cell::RefCell;
use std::fmt;
use std::ops::{Deref, DerefMut};

use bytes::{Bytes, BytesMut};

/// How a pooled buffer is held: boxed, so handing it around moves one
/// pointer instead of copying the 32-byte `BytesMut` right after its length
/// was written (a store-forwarding stall on every get and put).
type Slot = Box<BytesMut>;
use crossbeam_utils::CachePadded;

use crate::error::{PoolError, PoolResult};
use crate::sync::{
    Arc, AtomicU64, AtomicUsize, Mutex, Ordering, SoloCounter, Weak, downgrade, lock, thread_local,
};

/// Configures a [`BufferPool`].
#[derive(Debug, Clone)]
pub struct BufferPoolBuilder {
    min_class: usize,
    max_class: usize,
    max_pooled_bytes: usize,
    thread_cache_bytes: usize,
    thread_cache_buffers: usize,
    shards: usize,
}

impl Default for BufferPoolBuilder {
    fn default() -> Self {
        BufferPoolBuilder {
            min_class: 512,
            max_class: 1 << 20,
            max_pooled_bytes: 64 << 20,
            thread_cache_bytes: 4 << 20,
            thread_cache_buffers: 16,
            shards: 4,
        }
    }
}

impl BufferPoolBuilder {
    /// The smallest size class (a power of two; default 512 B). Smaller
    /// requests get a buffer of this size.
    pub fn min_class(mut self, bytes: usize) -> Self {
        self.min_class = bytes;
        self
    }

    /// The largest size class (a power of two; default 1 MiB). Larger
    /// requests are allocated fresh and freed on drop.
    pub fn max_class(mut self, bytes: usize) -> Self {
        self.max_class = bytes;
        self
    }

    /// The cap on memory held by the pool (shared lists plus every thread
    /// cache; default 64 MiB). Buffers returned beyond it are freed.
    pub fn max_pooled_bytes(mut self, bytes: usize) -> Self {
        self.max_pooled_bytes = bytes;
        self
    }

    /// How many bytes one thread's cache may hold (default 4 MiB; 0 turns
    /// thread caches off).
    pub fn thread_cache_bytes(mut self, bytes: usize) -> Self {
        self.thread_cache_bytes = bytes;
        self
    }

    /// How many buffers of one size class a thread's cache may hold
    /// (default 16; 0 turns thread caches off).
    pub fn thread_cache_buffers(mut self, n: usize) -> Self {
        self.thread_cache_buffers = n;
        self
    }

    /// How many shards each size class's shared free list has (default 4).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// Checks the configuration and builds the pool.
    pub fn build(self) -> PoolResult<BufferPool> {
        let bad = |m: &str| Err(PoolError::Config(format!("buffer pool: {m}")));
        if self.min_class == 0 || !self.min_class.is_power_of_two() {
            return bad("min_class must be a non-zero power of two");
        }
        if !self.max_class.is_power_of_two() || self.max_class < self.min_class {
            return bad("max_class must be a power of two >= min_class");
        }
        if self.max_class > 1 << 40 {
            return bad("max_class above 1 TiB");
        }
        if self.max_pooled_bytes == 0 {
            return bad("max_pooled_bytes must be > 0");
        }
        if self.shards == 0 || self.shards > 1024 {
            return bad("shards must be in 1..=1024");
        }
        let min_shift = self.min_class.trailing_zeros();
        let classes = (self.max_class.trailing_zeros() - min_shift + 1) as usize;
        let lists = (0..classes * self.shards)
            .map(|_| CachePadded::new(Mutex::new(Vec::new())))
            .collect();
        let thread_cache = self.thread_cache_bytes > 0 && self.thread_cache_buffers > 0;
        Ok(BufferPool {
            shared: Arc::new(Shared {
                id: next_pool_id(),
                min_shift,
                classes,
                shards: self.shards,
                max_pooled_bytes: self.max_pooled_bytes,
                thread_cache_bytes: if thread_cache {
                    self.thread_cache_bytes
                } else {
                    0
                },
                thread_cache_buffers: if thread_cache {
                    self.thread_cache_buffers
                } else {
                    0
                },
                charged: CachePadded::new(AtomicUsize::new(0)),
                shared_bytes: CachePadded::new(AtomicUsize::new(0)),
                lists,
                threads: Mutex::new(Vec::new()),
                uncached_hits: AtomicU64::new(0),
                uncached_misses: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                oversize: AtomicU64::new(0),
                retired: Mutex::new(RetiredStats::default()),
            }),
        })
    }
}

fn next_pool_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A snapshot of a [`BufferPool`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    /// Requests served from a pooled buffer (thread cache or shared list).
    pub hits: u64,
    /// Requests that allocated a fresh buffer (pool empty for that class).
    pub misses: u64,
    /// Requests above the largest size class (allocated, never pooled).
    pub oversize: u64,
    /// Buffers freed on return because the cap was reached (or they no
    /// longer fit a size class).
    pub dropped: u64,
    /// Bytes sitting in the pool right now (shared lists + thread caches).
    pub bytes_pooled: usize,
    /// Bytes charged against the cap (shared lists + thread-cache leases);
    /// never above `max_pooled_bytes`.
    pub bytes_reserved: usize,
}

/// A pool of reusable [`BytesMut`] buffers in power-of-two size classes.
///
/// Cloning is cheap (a shared handle). See the [crate docs](crate) for an
/// example.
#[derive(Clone)]
pub struct BufferPool {
    shared: Arc<Shared>,
}

struct Shared {
    id: u64,
    min_shift: u32,
    classes: usize,
    shards: usize,
    max_pooled_bytes: usize,
    thread_cache_bytes: usize,
    thread_cache_buffers: usize,
    charged: CachePadded<AtomicUsize>,
    shared_bytes: CachePadded<AtomicUsize>,
    /// `classes * shards` lists, class-major.
    lists: Box<[CachePadded<Mutex<Vec<Slot>>>]>,
    /// Per-thread counters of live thread caches.
    threads: Mutex<Vec<Arc<CachePadded<ThreadStats>>>>,
    uncached_hits: AtomicU64,
    uncached_misses: AtomicU64,
    dropped: AtomicU64,
    oversize: AtomicU64,
    /// Counters of thread caches whose threads have exited.
    retired: Mutex<RetiredStats>,
}

#[derive(Debug, Default)]
struct RetiredStats {
    hits: u64,
    misses: u64,
}

#[derive(Debug)]
struct ThreadStats {
    hits: SoloCounter,
    misses: SoloCounter,
    held: SoloCounter,
}

impl Shared {
    #[inline]
    fn class_size(&self, class: usize) -> usize {
        1usize << (self.min_shift as usize + class)
    }

    /// The class that serves a request of `size` bytes.
    #[inline]
    fn class_for_request(&self, size: usize) -> Option<usize> {
        let min = 1usize << self.min_shift;
        if size <= min {
            return Some(0);
        }
        let shift = usize::BITS - (size - 1).leading_zeros();
        let class = (shift - self.min_shift) as usize;
        (class < self.classes).then_some(class)
    }

    /// The class a returned buffer of `capacity` bytes can serve.
    #[inline]
    fn class_for_capacity(&self, capacity: usize) -> Option<usize> {
        if capacity < 1usize << self.min_shift {
            return None;
        }
        let shift = usize::BITS - 1 - capacity.leading_zeros();
        let class = (shift - self.min_shift) as usize;
        // A buffer that grew far past the largest class is freed, not kept.
        (class < self.classes || capacity < 2 * self.class_size(self.classes - 1))
            .then_some(class.min(self.classes - 1))
    }

    /// The class a returned, cleared buffer goes back to; `None` (counted
    /// as dropped) when it no longer fits one.
    #[inline]
    fn reusable_class(&self, buf: &mut BytesMut) -> Option<usize> {
        let min = 1usize << self.min_shift;
        let cap = buf.capacity();
        let whole = cap.max(min).checked_next_power_of_two().unwrap_or(cap);
        if cap < whole {
            // A buffer that was advanced or split (a connection's read
            // buffer after it consumed requests): take back the front if no
            // one else shares it (never allocates), so it returns to the
            // class it was taken from instead of the one below.
            let _ = buf.try_reclaim(whole);
        }
        let class = self.class_for_capacity(buf.capacity());
        if class.is_none() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        class
    }

    fn try_charge(&self, bytes: usize) -> bool {
        self.charged
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                c.checked_add(bytes).filter(|&n| n <= self.max_pooled_bytes)
            })
            .is_ok()
    }

    fn uncharge(&self, bytes: usize) {
        self.charged.fetch_sub(bytes, Ordering::AcqRel);
    }

    fn pop_shared(&self, class: usize, shard: usize) -> Option<Slot> {
        for i in 0..self.shards {
            let list = &self.lists[class * self.shards + (shard + i) % self.shards];
            let popped = lock(list).pop();
            if let Some(buf) = popped {
                let cap = buf.capacity();
                self.shared_bytes.fetch_sub(cap, Ordering::AcqRel);
                self.uncharge(cap);
                return Some(buf);
            }
        }
        None
    }

    /// Keeps `buf` in the shared list of `class`, or frees it over the cap.
    fn push_shared(&self, class: usize, shard: usize, buf: Slot) {
        let cap = buf.capacity();
        if !self.try_charge(cap) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.shared_bytes.fetch_add(cap, Ordering::AcqRel);
        lock(&self.lists[class * self.shards + shard % self.shards]).push(buf);
    }
}

/// One thread's cache for one pool.
struct LocalCache {
    pool_id: u64,
    home: Weak<Shared>,
    shard: usize,
    lease: usize,
    lists: Vec<Vec<Slot>>,
    /// Padded: two threads' counters must not share a cache line.
    stats: Arc<CachePadded<ThreadStats>>,
}

impl LocalCache {
    fn new(shared: &Arc<Shared>) -> Self {
        let stats = Arc::new(CachePadded::new(ThreadStats {
            hits: SoloCounter::new(),
            misses: SoloCounter::new(),
            held: SoloCounter::new(),
        }));
        lock(&shared.threads).push(Arc::clone(&stats));
        LocalCache {
            pool_id: shared.id,
            home: downgrade(shared),
            shard: next_shard(),
            lease: 0,
            lists: (0..shared.classes).map(|_| Vec::new()).collect(),
            stats,
        }
    }

    #[inline]
    fn get(&mut self, shared: &Shared, class: usize) -> Option<Slot> {
        if let Some(buf) = self.lists[class].pop() {
            let cap = buf.capacity();
            self.stats.held.sub(cap as u64);
            self.stats.hits.add(1);
            return Some(buf);
        }
        let found = shared.pop_shared(class, self.shard);
        if found.is_some() {
            self.stats.hits.add(1);
        } else {
            self.stats.misses.add(1);
        }
        found
    }

    #[inline]
    fn put(&mut self, shared: &Shared, class: usize, buf: Slot) {
        let cap = buf.capacity();
        let held = self.held();
        let list_has_room = self.lists[class].len() < shared.thread_cache_buffers;
        if list_has_room && held + cap <= self.lease {
            self.keep(class, buf);
            return;
        }
        if list_has_room && held + cap <= shared.thread_cache_bytes {
            // Grow the lease: at least what is needed, a quarter of the
            // thread budget at once so this stays rare.
            let want = (held + cap - self.lease)
                .max(shared.thread_cache_bytes / 4)
                .min(shared.thread_cache_bytes - self.lease);
            if shared.try_charge(want) {
                self.lease += want;
                self.keep(class, buf);
                return;
            }
        }
        shared.push_shared(class, self.shard, buf);
    }

    /// Bytes in this cache's lists (its thread is the only writer).
    #[inline]
    fn held(&self) -> usize {
        self.stats.held.get() as usize
    }

    #[inline]
    fn keep(&mut self, class: usize, buf: Slot) {
        let cap = buf.capacity();
        self.stats.held.add(cap as u64);
        self.lists[class].push(buf);
    }

    /// Gives everything back to the pool (thread exit, or the pool is gone).
    fn flush(&mut self) {
        let Some(shared) = self.home.upgrade() else {
            return;
        };
        shared.uncharge(self.lease);
        self.lease = 0;
        for (class, list) in self.lists.iter_mut().enumerate() {
            for buf in list.drain(..) {
                shared.push_shared(class, self.shard, buf);
            }
        }
        self.stats.held.sub(self.stats.held.get());
        let mut retired = lock(&shared.retired);
        retired.hits += self.stats.hits.get();
        retired.misses += self.stats.misses.get();
        drop(retired);
        lock(&shared.threads).retain(|t| !Arc::ptr_eq(t, &self.stats));
    }
}

impl Drop for LocalCache {
    fn drop(&mut self) {
        self.flush();
    }
}

fn next_shard() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(not(kuai_loom))]
thread_local! {
    static CACHES: RefCell<Vec<LocalCache>> = const { RefCell::new(Vec::new()) };
}

// loom's macro takes no `const { }` initialiser.
#[cfg(kuai_loom)]
thread_local! {
    static CACHES: RefCell<Vec<LocalCache>> = RefCell::new(Vec::new());
}

/// Runs `f` with this thread's cache for `shared`, creating it if needed.
/// `None` when thread caches are off or the thread is being torn down.
#[inline]
fn with_local<R>(shared: &Arc<Shared>, f: impl FnOnce(&mut LocalCache) -> R) -> Option<R> {
    if shared.thread_cache_buffers == 0 {
        return None;
    }
    CACHES
        .try_with(|cell| {
            let mut caches = cell.try_borrow_mut().ok()?;
            if let Some(first) = caches.first_mut() {
                if first.pool_id == shared.id {
                    return Some(f(first));
                }
            }
            let idx = match caches.iter().position(|c| c.pool_id == shared.id) {
                Some(i) => i,
                None => {
                    // Forget caches of pools that no longer exist.
                    caches.retain(|c| c.home.strong_count() > 0);
                    caches.push(LocalCache::new(shared));
                    caches.len() - 1
                }
            };
            // Most recently used pool first: the common case is one pool.
            caches.swap(0, idx);
            Some(f(&mut caches[0]))
        })
        .ok()
        .flatten()
}

impl BufferPool {
    /// A pool with the default configuration (512 B … 1 MiB, 64 MiB cap).
    pub fn new() -> Self {
        // The default configuration is valid by construction.
        match BufferPoolBuilder::default().build() {
            Ok(pool) => pool,
            Err(e) => unreachable!("default buffer pool config is valid: {e}"),
        }
    }

    /// A builder to configure size classes, the cap and thread caches.
    pub fn builder() -> BufferPoolBuilder {
        BufferPoolBuilder::default()
    }

    /// An empty buffer with capacity of at least `size` bytes, borrowed from
    /// the pool; it returns itself when dropped.
    #[inline]
    pub fn get(&self, size: usize) -> PooledBuf<'_> {
        PooledBuf {
            buf: Some(self.take(size)),
            home: Home::Borrowed(&self.shared),
        }
    }

    /// Like [`get`](Self::get), but the buffer keeps the pool alive and can
    /// move into a `'static` task.
    pub fn get_owned(&self, size: usize) -> PooledBuf<'static> {
        PooledBuf {
            buf: Some(self.take(size)),
            home: Home::Owned(Arc::clone(&self.shared)),
        }
    }

    /// An explicit per-thread cache for this pool (see [`LocalBufferPool`]).
    pub fn local(&self) -> LocalBufferPool {
        LocalBufferPool {
            cache: RefCell::new(LocalCache::new(&self.shared)),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Returns a buffer obtained elsewhere (for example from
    /// [`PooledBuf::into_inner`]) to the pool.
    pub fn put(&self, buf: BytesMut) {
        give_back(&self.shared, Box::new(buf));
    }

    #[inline]
    fn take(&self, size: usize) -> Slot {
        let shared = &self.shared;
        let Some(class) = shared.class_for_request(size) else {
            shared.oversize.fetch_add(1, Ordering::Relaxed);
            return Box::new(BytesMut::with_capacity(size));
        };
        let found = match with_local(shared, |lc| lc.get(shared, class)) {
            Some(found) => found,
            None => {
                // No thread cache (off, or the thread is exiting).
                let found = shared.pop_shared(class, 0);
                let counter = if found.is_some() {
                    &shared.uncached_hits
                } else {
                    &shared.uncached_misses
                };
                counter.fetch_add(1, Ordering::Relaxed);
                found
            }
        };
        found.unwrap_or_else(|| Box::new(BytesMut::with_capacity(shared.class_size(class))))
    }

    /// Fills the shared lists with `count` buffers of the class serving
    /// `size`, up to the cap. Returns how many were added.
    pub fn prewarm(&self, size: usize, count: usize) -> usize {
        let shared = &self.shared;
        let Some(class) = shared.class_for_request(size) else {
            return 0;
        };
        let bytes = shared.class_size(class);
        let mut added = 0;
        for i in 0..count {
            if !shared.try_charge(bytes) {
                break;
            }
            shared.shared_bytes.fetch_add(bytes, Ordering::AcqRel);
            lock(&shared.lists[class * shared.shards + i % shared.shards])
                .push(Box::new(BytesMut::with_capacity(bytes)));
            added += 1;
        }
        added
    }

    /// The pool's counters. Thread caches are read without stopping their
    /// threads, so the numbers are a consistent-enough snapshot, not atomic.
    pub fn stats(&self) -> BufferStats {
        let s = &self.shared;
        let retired = lock(&s.retired);
        let mut out = BufferStats {
            hits: retired.hits + s.uncached_hits.load(Ordering::Relaxed),
            misses: retired.misses + s.uncached_misses.load(Ordering::Relaxed),
            oversize: s.oversize.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            bytes_pooled: s.shared_bytes.load(Ordering::Acquire),
            bytes_reserved: s.charged.load(Ordering::Acquire),
        };
        drop(retired);
        for t in lock(&s.threads).iter() {
            out.hits += t.hits.get();
            out.misses += t.misses.get();
            out.bytes_pooled += t.held.get() as usize;
        }
        out
    }

    /// The configured cap on pooled memory.
    pub fn max_pooled_bytes(&self) -> usize {
        self.shared.max_pooled_bytes
    }

    /// The capacity a request of `size` bytes is rounded up to, or `None`
    /// above the largest class.
    pub fn class_size_for(&self, size: usize) -> Option<usize> {
        self.shared
            .class_for_request(size)
            .map(|c| self.shared.class_size(c))
    }

    /// Moves this thread's cached buffers for this pool to the shared lists
    /// (they are moved automatically when the thread exits).
    pub fn flush_thread_cache(&self) {
        let _ = CACHES.try_with(|cell| {
            if let Ok(mut caches) = cell.try_borrow_mut() {
                caches.retain(|c| c.pool_id != self.shared.id);
            }
        });
    }
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("min_class", &self.shared.class_size(0))
            .field(
                "max_class",
                &self.shared.class_size(self.shared.classes - 1),
            )
            .field("max_pooled_bytes", &self.shared.max_pooled_bytes)
            .field("stats", &self.stats())
            .finish()
    }
}

#[inline]
fn give_back(shared: &Arc<Shared>, mut buf: Slot) {
    buf.clear();
    let Some(class) = shared.reusable_class(&mut buf) else {
        return;
    };
    let mut slot = Some(buf);
    let _ = with_local(shared, |lc| {
        if let Some(buf) = slot.take() {
            lc.put(shared, class, buf);
        }
    });
    if let Some(buf) = slot {
        shared.push_shared(class, 0, buf);
    }
}

enum Home<'a> {
    Borrowed(&'a Arc<Shared>),
    Owned(Arc<Shared>),
    Local(&'a LocalBufferPool),
    Detached,
}

/// An explicit per-thread cache in front of a [`BufferPool`]: the fastest
/// way to use the pool from a thread that owns its work (a reactor or
/// worker thread).
///
/// [`BufferPool::get`] finds the calling thread's cache through a
/// thread-local on every get and every drop; a `LocalBufferPool` is that
/// cache as a value, so a get or a drop is a `RefCell` borrow and a `Vec`
/// pop or push. It is `!Sync` (use one per thread); when dropped, its
/// buffers and lease go back to the shared pool.
///
/// ```
/// let pool = kuai_pool::BufferPool::new();
/// let local = pool.local();
/// {
///     let mut buf = local.get(4096);
///     buf.extend_from_slice(b"hello");
/// } // back in this thread's cache
/// assert_eq!(local.get(4096).capacity(), 4096);
/// assert_eq!(pool.stats().hits, 1);
/// ```
pub struct LocalBufferPool {
    shared: Arc<Shared>,
    cache: RefCell<LocalCache>,
}

impl LocalBufferPool {
    /// An empty buffer of at least `size` bytes from this cache (or the
    /// shared lists behind it); it returns to this cache when dropped.
    #[inline]
    pub fn get(&self, size: usize) -> PooledBuf<'_> {
        let shared = &*self.shared;
        let buf = match shared.class_for_request(size) {
            Some(class) => {
                let found = match self.cache.try_borrow_mut() {
                    Ok(mut lc) => lc.get(shared, class),
                    Err(_) => shared.pop_shared(class, 0),
                };
                found.unwrap_or_else(|| Box::new(BytesMut::with_capacity(shared.class_size(class))))
            }
            None => {
                shared.oversize.fetch_add(1, Ordering::Relaxed);
                Box::new(BytesMut::with_capacity(size))
            }
        };
        PooledBuf {
            buf: Some(buf),
            home: Home::Local(self),
        }
    }

    #[inline]
    fn put(&self, mut buf: Slot) {
        let shared = &*self.shared;
        buf.clear();
        let Some(class) = shared.reusable_class(&mut buf) else {
            return;
        };
        match self.cache.try_borrow_mut() {
            Ok(mut lc) => lc.put(shared, class, buf),
            Err(_) => shared.push_shared(class, 0, buf),
        }
    }

    /// The pool this cache belongs to.
    pub fn pool(&self) -> BufferPool {
        BufferPool {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl fmt::Debug for LocalBufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.cache.try_borrow().map(|c| c.held()).ok();
        f.debug_struct("LocalBufferPool")
            .field("held_bytes", &held)
            .finish()
    }
}

/// A pooled [`BytesMut`]: derefs to it, and returns itself to its pool when
/// dropped.
///
/// Everything `BytesMut` offers works through `Deref`/`DerefMut` (including
/// `bytes::BufMut` methods); where a function takes `impl BufMut`, pass
/// `&mut *buf`. [`freeze`](Self::freeze) and [`into_inner`](Self::into_inner)
/// take the bytes out of the pool for good.
pub struct PooledBuf<'a> {
    buf: Option<Slot>,
    home: Home<'a>,
}

impl PooledBuf<'_> {
    /// Takes the buffer out of the pool: it will not be returned.
    pub fn into_inner(mut self) -> BytesMut {
        self.home = Home::Detached;
        self.buf.take().map(|b| *b).unwrap_or_default()
    }

    /// Freezes the contents into [`Bytes`] (the memory leaves the pool).
    pub fn freeze(self) -> Bytes {
        self.into_inner().freeze()
    }
}

impl Deref for PooledBuf<'_> {
    type Target = BytesMut;
    #[inline]
    fn deref(&self) -> &BytesMut {
        match &self.buf {
            Some(b) => b,
            None => unreachable!("a PooledBuf holds its buffer until dropped"),
        }
    }
}

impl DerefMut for PooledBuf<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut BytesMut {
        match &mut self.buf {
            Some(b) => b,
            None => unreachable!("a PooledBuf holds its buffer until dropped"),
        }
    }
}

impl AsRef<[u8]> for PooledBuf<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for PooledBuf<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl std::io::Write for PooledBuf<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for PooledBuf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Drop for PooledBuf<'_> {
    #[inline]
    fn drop(&mut self) {
        let Some(buf) = self.buf.take() else { return };
        match &self.home {
            Home::Borrowed(shared) => give_back(shared, buf),
            Home::Owned(shared) => give_back(shared, buf),
            Home::Local(local) => local.put(buf),
            Home::Detached => {}
        }
    }
}

#[cfg(all(test, not(kuai_loom)))]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn classes_round_up_to_powers_of_two() {
        let pool = BufferPool::new();
        assert_eq!(pool.class_size_for(0), Some(512));
        assert_eq!(pool.class_size_for(512), Some(512));
        assert_eq!(pool.class_size_for(513), Some(1024));
        assert_eq!(pool.class_size_for(4096), Some(4096));
        assert_eq!(pool.class_size_for(1 << 20), Some(1 << 20));
        assert_eq!(pool.class_size_for((1 << 20) + 1), None);
    }

    #[test]
    fn buffers_come_back_and_are_reused() {
        let pool = BufferPool::new();
        let ptr = {
            let mut b = pool.get(4000);
            assert!(b.capacity() >= 4000);
            assert!(b.is_empty());
            b.put_slice(b"hello");
            b.as_ptr() as usize
        };
        let b = pool.get(4096);
        assert_eq!(b.as_ptr() as usize, ptr, "same memory handed out again");
        assert!(b.is_empty(), "a reused buffer is cleared");
        let s = pool.stats();
        assert_eq!((s.hits, s.misses), (1, 1));
    }

    #[test]
    fn cap_is_never_exceeded_and_extra_buffers_are_freed() {
        let pool = BufferPool::builder()
            .max_pooled_bytes(8 * 1024)
            .thread_cache_bytes(0)
            .build()
            .map_err(|e| e.to_string());
        let Ok(pool) = pool else {
            panic!("valid config rejected: {pool:?}")
        };
        let bufs: Vec<_> = (0..5).map(|_| pool.get(4096)).collect();
        drop(bufs);
        let s = pool.stats();
        assert_eq!(s.bytes_pooled, 8 * 1024);
        assert!(s.bytes_reserved <= 8 * 1024);
        assert_eq!(s.dropped, 3);
    }

    #[test]
    fn detached_buffers_leave_the_pool() {
        let pool = BufferPool::new();
        let mut b = pool.get(100);
        b.put_slice(b"abc");
        let frozen = b.freeze();
        assert_eq!(&frozen[..], b"abc");
        assert_eq!(pool.stats().bytes_pooled, 0);
    }

    #[test]
    fn oversize_requests_are_served_but_not_pooled() {
        let pool = BufferPool::builder().max_class(4096).build();
        let Ok(pool) = pool else { panic!("valid") };
        drop(pool.get(10_000));
        let s = pool.stats();
        assert_eq!((s.oversize, s.dropped, s.bytes_pooled), (1, 1, 0));
    }

    #[test]
    fn split_buffers_are_reclaimed_or_dropped_never_misfiled() {
        let pool = BufferPool::new();
        let mut b = pool.get(1024);
        b.put_slice(&[7u8; 1000]);
        let head = b.split_to(600);
        drop(b); // 424 bytes of capacity left, and shared with `head`
        drop(head);
        let b = pool.get(1024);
        assert!(b.capacity() >= 1024);
    }

    #[test]
    fn thread_exit_returns_cached_buffers_to_shared_lists() {
        let pool = BufferPool::new();
        let p2 = pool.clone();
        std::thread::spawn(move || {
            let bufs: Vec<_> = (0..4).map(|_| p2.get_owned(8192)).collect();
            drop(bufs);
        })
        .join()
        .ok();
        let s = pool.stats();
        assert_eq!(s.bytes_pooled, 4 * 8192);
        assert_eq!(s.bytes_reserved, 4 * 8192, "the lease was handed back");
        assert_eq!(s.misses, 4);
        let again = pool.get(8192);
        assert!(again.capacity() >= 8192);
        assert_eq!(pool.stats().hits, 1);
    }

    #[test]
    fn an_advanced_buffer_returns_to_its_own_class() {
        use bytes::{Buf, BufMut};
        let pool = BufferPool::new();
        let ptr = {
            let mut b = pool.get_owned(16 * 1024);
            b.put_slice(&[7u8; 100]);
            b.advance(60); // a reader consumed part of what it read
            b.as_ptr() as usize - 60
        };
        let again = pool.get_owned(16 * 1024);
        assert_eq!(again.as_ptr() as usize, ptr, "the same allocation");
        assert!(again.capacity() >= 16 * 1024);
        assert_eq!(pool.stats().hits, 1);
    }

    #[test]
    fn local_handles_cache_and_give_back_on_drop() {
        let pool = BufferPool::new();
        let local = pool.local();
        let ptr = local.get(3000).as_ptr() as usize;
        assert_eq!(local.get(4096).as_ptr() as usize, ptr);
        let owned = pool.get_owned(4096); // the thread-local path: a miss
        drop(owned);
        assert_eq!(pool.stats().bytes_pooled, 2 * 4096);
        drop(local);
        let s = pool.stats();
        assert_eq!((s.hits, s.misses), (1, 2));
        assert_eq!(
            s.bytes_pooled,
            2 * 4096,
            "the local cache flushed to the shared lists"
        );
        assert!(s.bytes_reserved >= s.bytes_pooled);
    }

    #[test]
    fn bad_configs_are_rejected() {
        for b in [
            BufferPool::builder().min_class(0),
            BufferPool::builder().min_class(1000),
            BufferPool::builder().max_class(256),
            BufferPool::builder().max_pooled_bytes(0),
            BufferPool::builder().shards(0),
        ] {
            assert!(matches!(b.build(), Err(PoolError::Config(_))));
        }
    }

    #[test]
    fn prewarm_fills_up_to_cap() {
        let pool = BufferPool::builder().max_pooled_bytes(10_000).build();
        let Ok(pool) = pool else { panic!("valid") };
        assert_eq!(pool.prewarm(4096, 5), 2);
        assert_eq!(pool.stats().bytes_pooled, 8192);
    }
}
