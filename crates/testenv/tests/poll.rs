//! The one poll helper: what it returns, how it reports a timeout, and that the sync and
//! async forms behave alike.

use std::time::{Duration, Instant};

use testenv::poll::{eventually, wait_until, wait_until_async};

#[test]
fn wait_until_returns_the_value_and_names_what_it_waited_for() {
    let mut calls = 0;
    let value = wait_until(Duration::from_secs(5), "three calls", || {
        calls += 1;
        (calls == 3).then_some(calls)
    })
    .unwrap();
    assert_eq!(value, 3);

    let err = wait_until(Duration::from_millis(50), "the impossible", || None::<()>).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("waiting for the impossible"), "{message}");
    assert!(!message.contains("last seen"), "{message}");
}

#[test]
fn a_timeout_shows_the_last_observation() {
    let mut calls = 0;
    let err = wait_until(Duration::from_millis(100), "five pods", || {
        calls += 1;
        Err::<(), _>(format!("{calls} pods"))
    })
    .unwrap_err();
    assert!(
        format!("{err:#}").contains(&format!("last seen: {calls} pods")),
        "{err:#}"
    );
    // A boolean probe, and the deadline is honoured (a hang guard, not a measure).
    let started = Instant::now();
    assert!(wait_until(Duration::from_millis(100), "never", || false).is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_async_form_shares_the_policy_and_bounds_a_hanging_probe() {
    let mut calls = 0;
    let value = wait_until_async(Duration::from_secs(5), "three calls", || {
        calls += 1;
        let n = calls;
        async move { (n == 3).then_some(n) }
    })
    .await
    .unwrap();
    assert_eq!(value, 3);

    let err = wait_until_async(Duration::from_millis(100), "an answer", || async {
        Err::<(), _>("no answer yet")
    })
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("waiting for an answer; last seen: no answer yet"),
        "{err:#}"
    );

    // A probe that never returns is abandoned at the deadline.
    let started = Instant::now();
    let err = wait_until_async(Duration::from_millis(100), "a hung probe", || {
        std::future::pending::<Option<()>>()
    })
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("a hung probe"), "{err:#}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn eventually_returns_the_value() {
    assert_eq!(eventually("a value", || async { Some(7) }).await, 7);
    eventually("true", || async { true }).await;
}
