//! The adapter's state machines on their own: the rate limiter's compare-and-swap loop, the
//! fetch lease and its backoff, and the bounded waiter queue.

use crate::adapter::bucket::{self, Verdict, CAS_ATTEMPTS};
use crate::adapter::fake::FakeHost;
use crate::adapter::lease;
use crate::adapter::waiters::{Waiter, Waiters};
use crate::fixtures::NOW;
use crate::ratelimit::Limit;

fn limit(rpm: u32) -> Limit {
    Limit {
        callers: vec!["*".into()],
        requests_per_minute: rpm,
        burst: rpm,
    }
}

#[test]
fn the_rate_limiter_retries_lost_races_and_fails_closed_when_it_cannot_count() {
    let host = FakeHost::at(NOW);
    // A race lost a few times: retried, then counted.
    host.lose_cas.set(3);
    host.shared.borrow_mut().insert(
        crate::ratelimit::bucket_key("p", "svc"),
        (b"5000 0".to_vec(), 1),
    );
    assert_eq!(
        bucket::take(&host, "p", "svc", &limit(60)),
        Verdict::Allowed
    );
    // Lost every time: refused, never let through uncounted.
    host.lose_cas.set(u32::try_from(CAS_ATTEMPTS).unwrap());
    assert_eq!(
        bucket::take(&host, "p", "svc", &limit(60)),
        Verdict::Uncounted
    );
    assert_eq!(Verdict::Uncounted.retry_after(), Some(1));
    // A host error on read or write, or no clock: refused.
    host.fail_get.set(true);
    assert_eq!(
        bucket::take(&host, "p", "svc", &limit(60)),
        Verdict::Uncounted
    );
    host.fail_get.set(false);
    host.fail_set.set(true);
    assert_eq!(
        bucket::take(&host, "p", "svc", &limit(60)),
        Verdict::Uncounted
    );
    host.fail_set.set(false);
    host.clock.set(None);
    assert_eq!(
        bucket::take(&host, "p", "svc", &limit(60)),
        Verdict::Uncounted
    );
    // An empty bucket: limited, with the seconds until the next token.
    let host = FakeHost::at(NOW);
    for _ in 0..2 {
        assert_eq!(bucket::take(&host, "p", "svc", &limit(2)), Verdict::Allowed);
    }
    assert_eq!(
        bucket::take(&host, "p", "svc", &limit(2)),
        Verdict::Limited(30)
    );
}

#[test]
fn a_lease_is_taken_once_and_freed_by_time_even_if_its_holder_died() {
    let host = FakeHost::at(NOW);
    assert!(lease::take(&host, "l", NOW, NOW + 3, 1));
    // Held by VM 1: VM 2 cannot take it until it expires.
    assert!(!lease::take(&host, "l", NOW + 1, NOW + 4, 2));
    // VM 1 died holding it: at its expiry VM 2 takes it.
    assert!(lease::take(&host, "l", NOW + 3, NOW + 6, 2));
    // A race lost at the write: not taken.
    host.lose_cas.set(1);
    assert!(!lease::take(&host, "l", NOW + 10, NOW + 12, 3));
    // Unreadable shared data: not taken.
    host.fail_get.set(true);
    assert!(!lease::take(&host, "l", NOW + 20, NOW + 22, 3));
    host.fail_get.set(false);
    lease::hold(&host, "l", 0, 3);
    assert!(lease::take(&host, "l", NOW + 21, NOW + 23, 4));
    let steps: Vec<i64> = (1..=8).map(|f| lease::backoff(f, 300)).collect();
    assert_eq!(steps, [2, 4, 8, 16, 32, 64, 64, 64]);
    assert_eq!(lease::backoff(5, 10), 10);
    assert_eq!(lease::backoff(1, 0), 1);
}

#[test]
fn waiters_are_bounded_per_provider_and_leave_by_provider_or_deadline() {
    let w = |id: u32, p: usize, deadline: i64| Waiter {
        context_id: id,
        provider: p,
        deadline,
        headers: Vec::new(),
    };
    let mut q = Waiters::default();
    assert!(q.push(w(1, 0, 10), 2));
    assert!(q.push(w(2, 0, 20), 2));
    assert!(!q.push(w(3, 0, 20), 2), "the bound holds");
    assert!(q.push(w(4, 1, 5), 2), "per provider");
    let expired: Vec<u32> = q.take_expired(10).iter().map(|x| x.context_id).collect();
    assert_eq!(expired, [1, 4]);
    let zero: Vec<u32> = q
        .take_provider(Some(0))
        .iter()
        .map(|x| x.context_id)
        .collect();
    assert_eq!(zero, [2]);
    assert_eq!(q.len(), 0);
}
