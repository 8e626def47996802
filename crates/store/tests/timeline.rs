//! Timelines: push, pull and hybrid agree on what a user sees; pagination,
//! bounds, unfollow and back-pressure.

use std::collections::BTreeSet;

use kuai_core::ErrorKind;
use kuai_store::{Cursor, FanoutStrategy, Timeline, TimelineEntry};
use proptest::prelude::*;

fn tl(strategy: FanoutStrategy) -> Timeline {
    Timeline::builder()
        .strategy(strategy)
        .workers(0)
        .inbox_capacity(10_000)
        .outbox_capacity(10_000)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ids(entries: &[TimelineEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.id).collect()
}

fn all_pages(t: &Timeline, user: u64, page: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let p = t.home(user, cursor, page).unwrap_or_else(|e| panic!("{e}"));
        out.extend(ids(&p.entries));
        match p.next {
            // Cursors survive a round trip through their text form.
            Some(c) => cursor = Some(Cursor::decode(&c.encode()).unwrap_or_else(|e| panic!("{e}"))),
            None => break,
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Op {
    Follow(u64, u64),
    Unfollow(u64, u64),
    Post(u64),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..12, 0u64..12).prop_map(|(a, b)| Op::Follow(a, b)),
        1 => (0u64..12, 0u64..12).prop_map(|(a, b)| Op::Unfollow(a, b)),
        4 => (0u64..12).prop_map(Op::Post),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Whatever the graph and the order of events, after fan-out completes
    /// the three strategies show every user the same home timeline, and
    /// paging through it yields it exactly once, newest first.
    #[test]
    fn push_pull_and_hybrid_agree(ops in prop::collection::vec(op(), 1..120), page in 1usize..7) {
        let clock = std::sync::Arc::new(kuai_core::ManualClock::new());
        let build = |s| Timeline::builder().strategy(s).workers(0).clock(clock.clone())
            .inbox_capacity(10_000).outbox_capacity(10_000).build().unwrap_or_else(|e| panic!("{e}"));
        let ts = [build(FanoutStrategy::Push), build(FanoutStrategy::Pull), build(FanoutStrategy::Hybrid { threshold: 3 })];
        for op in &ops {
            // Same id for the same post in all three: one post id per op.
            let mut posted = None;
            for t in &ts {
                match *op {
                    Op::Follow(a, b) if a != b => { let _ = t.follow(a, b); }
                    Op::Unfollow(a, b) => { let _ = t.unfollow(a, b); }
                    Op::Post(a) => { posted = Some(t.post(a).unwrap_or_else(|e| panic!("{e}"))); }
                    Op::Flush => t.flush(),
                    _ => {}
                }
            }
            let _ = posted;
            // Posts later in time get larger ids in every timeline.
            clock.advance(std::time::Duration::from_millis(1));
        }
        for t in &ts { t.flush(); }
        for user in 0..12 {
            let views: Vec<Vec<u64>> = ts.iter().map(|t| all_pages(t, user, page)).collect();
            prop_assert_eq!(&views[0], &views[1], "push vs pull for user {}", user);
            prop_assert_eq!(&views[1], &views[2], "pull vs hybrid for user {}", user);
            prop_assert!(views[0].windows(2).all(|w| w[0] > w[1]), "newest first, no duplicates");
        }
    }
}

#[test]
fn hybrid_pulls_celebrities_and_pushes_the_rest() {
    let t = tl(FanoutStrategy::Hybrid { threshold: 3 });
    for f in 1..=5 {
        assert_eq!(t.follow(f, 100).ok(), Some(true));
    }
    assert_eq!(t.follow(1, 100).ok(), Some(false), "already following");
    t.follow(1, 7).unwrap_or_else(|e| panic!("{e}"));
    t.follow(2, 7).unwrap_or_else(|e| panic!("{e}"));
    let celeb = t.post(100).unwrap_or_else(|e| panic!("{e}"));
    t.flush();
    assert_eq!(
        t.stats().inbox_inserts,
        0,
        "a celebrity's post is not fanned out"
    );
    let ordinary = t.post(7).unwrap_or_else(|e| panic!("{e}"));
    t.flush();
    let st = t.stats();
    assert_eq!((st.inbox_inserts, st.pulled_accounts), (2, 1));
    assert_eq!(all_pages(&t, 1, 10), vec![ordinary, celeb]);
    assert_eq!(all_pages(&t, 5, 10), vec![celeb]);
    assert_eq!(t.follower_count(100), 5);
}

#[test]
fn push_inboxes_are_bounded() {
    let t = Timeline::builder()
        .strategy(FanoutStrategy::Push)
        .workers(1)
        .inbox_capacity(5)
        .outbox_capacity(100)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    t.follow(1, 2).unwrap_or_else(|e| panic!("{e}"));
    let posted: Vec<u64> = (0..20)
        .map(|_| t.post(2).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    t.flush();
    let page = t.home(1, None, 100).unwrap_or_else(|e| panic!("{e}"));
    let newest: Vec<u64> = posted.iter().rev().take(5).copied().collect();
    assert_eq!(ids(&page.entries), newest);
    assert_eq!(t.stats().inbox_entries, 5);
}

#[test]
fn following_backfills_and_unfollowing_removes() {
    let t = tl(FanoutStrategy::Push);
    let a = t.post(2).unwrap_or_else(|e| panic!("{e}"));
    t.follow(1, 2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all_pages(&t, 1, 3), vec![a]);
    assert_eq!(t.unfollow(1, 2).ok(), Some(true));
    assert_eq!(t.unfollow(1, 2).ok(), Some(false));
    assert!(all_pages(&t, 1, 3).is_empty());
    assert!(t.follow(3, 3).is_err());
}

#[test]
fn a_full_fanout_queue_rejects_posts_without_writing() {
    let t = Timeline::builder()
        .strategy(FanoutStrategy::Push)
        .workers(0)
        .queue_capacity(2)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    t.follow(1, 2).unwrap_or_else(|e| panic!("{e}"));
    assert!(t.post(2).is_ok());
    assert!(t.post(2).is_ok());
    let e = t.post(2).map_err(kuai_core::Error::from);
    assert_eq!(e.err().map(|e| e.kind()), Some(ErrorKind::Overloaded));
    assert_eq!(t.stats().posts, 2);
    t.flush();
    assert_eq!(t.home(1, None, 10).map(|p| p.entries.len()).ok(), Some(2));
    // Bad page sizes are typed errors.
    assert!(t.home(1, None, 0).is_err());
    assert!(t.home(1, None, 5000).is_err());
}

#[test]
fn concurrent_posts_and_reads_converge() {
    let t = std::sync::Arc::new(
        Timeline::builder()
            .strategy(FanoutStrategy::Hybrid { threshold: 50 })
            .workers(2)
            .build()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    for f in 1..=100u64 {
        t.follow(f, 0).unwrap_or_else(|e| panic!("{e}"));
        t.follow(f, 1000 + f % 3).unwrap_or_else(|e| panic!("{e}"));
    }
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let t = t.clone();
            std::thread::spawn(move || {
                let author = if w == 0 { 0 } else { 1000 + w % 3 };
                (0..50)
                    .map(|_| t.post(author).unwrap_or(0))
                    .collect::<BTreeSet<u64>>()
            })
        })
        .collect();
    let reader = {
        let t = t.clone();
        std::thread::spawn(move || {
            for _ in 0..200 {
                let p = t.home(7, None, 20).unwrap_or_else(|e| panic!("{e}"));
                assert!(p.entries.windows(2).all(|w| w[0].id > w[1].id));
            }
        })
    };
    let all: BTreeSet<u64> = writers
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    assert!(reader.join().is_ok());
    t.flush();
    // User 7 follows 0 (pulled) and 1001.
    let seen: BTreeSet<u64> = all_pages(&t, 7, 50).into_iter().collect();
    assert!(!seen.is_empty() && seen.is_subset(&all));
    assert_eq!(
        seen.len(),
        100,
        "50 posts by 0 (pulled) and 50 by 1001 (pushed)"
    );
}
