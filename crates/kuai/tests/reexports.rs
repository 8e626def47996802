//! Touches every re-export, so a broken feature fails CI.
//! Run with `--features full` (as `cargo xtask test` does) to cover them all.

#[test]
fn core_is_always_there() {
    let err = kuai::core::Error::corrupt("x");
    assert_eq!(err.kind(), kuai::core::ErrorKind::Corrupt);
}

macro_rules! touch {
    ($($feature:literal => $module:ident),* $(,)?) => {$(
        #[cfg(feature = $feature)]
        #[test]
        #[allow(non_snake_case)]
        fn $module() {
            let err: kuai::$module::Error = kuai::core::Error::closed(concat!($feature, " reachable"));
            assert!(err.to_string().contains($feature));
        }
    )*};
}

touch! {
    "lockfree" => lockfree,
    "reactor" => reactor,
    "zerocopy" => zerocopy,
    "codec" => codec,
    "pool" => pool,
    "cache" => cache,
    "shard" => shard,
    "queue" => queue,
    "store" => store,
}

/// `postgres` forwards kuai-store's PostgreSQL backend.
#[cfg(feature = "postgres")]
#[test]
fn postgres() {
    assert!(kuai::store::PgLookup::new("kv", "key", "value").is_ok());
    assert!(kuai::store::PgLookup::new("kv;", "key", "value").is_err());
}

/// `redis`, `nats` and `rabbitmq` forward the service adapters.
#[cfg(all(feature = "redis", feature = "nats", feature = "rabbitmq"))]
#[test]
fn service_adapters() {
    fn named<T>() -> &'static str {
        std::any::type_name::<T>()
    }
    assert!(named::<kuai::cache::TwoLevelConfig>().contains("kuai_cache"));
    assert!(named::<kuai::queue::nats::OutboxRelay>().contains("kuai_queue"));
    assert!(named::<kuai::queue::rabbitmq::RabbitSink>().contains("kuai_queue"));
}
