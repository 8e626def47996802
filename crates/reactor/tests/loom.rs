//! loom model of the hedging budget: concurrent deposits and withdrawals
//! never spend a token that was not earned, and never lose one.
#![cfg(kuai_loom)]

use kuai_reactor::Budget;
use loom::sync::Arc;
use loom::thread;

#[test]
fn budget_never_overspends() {
    loom::model(|| {
        // 0.5 tokens per call, so two deposits earn exactly one backup.
        let budget = Arc::new(Budget::new(0.5, 4.0));
        let b1 = Arc::clone(&budget);
        let b2 = Arc::clone(&budget);
        let t1 = thread::spawn(move || {
            b1.deposit();
            b1.try_withdraw()
        });
        let t2 = thread::spawn(move || {
            b2.deposit();
            b2.try_withdraw()
        });
        let w1 = t1.join().unwrap_or(false);
        let w2 = t2.join().unwrap_or(false);
        let spent = u64::from(w1) + u64::from(w2);
        assert!(
            spent <= 1,
            "two half-token deposits pay for at most one backup"
        );
        // Whatever was not spent is still there.
        assert_eq!(budget.available() + spent, 1);
    });
}
