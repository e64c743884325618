//! Trying an operation again with exponential backoff, for backends whose transient failures
//! (throttling, a busy lock, a dropped connection) are worth a second attempt.

use std::future::Future;
use std::time::Duration;

/// Runs `f` until it succeeds, its error is not `retryable`, or `tries` attempts were made;
/// the pause between attempts starts at `first` and doubles. The last result is returned.
pub async fn with_backoff<T, E, F, Fut>(
    tries: u32,
    first: Duration,
    retryable: impl Fn(&E) -> bool,
    mut f: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = first;
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if attempt < tries && retryable(&e) => {
                tracing::debug!(error = %e, attempt, "trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_what_is_retryable_up_to_the_limit() {
        let n = AtomicU32::new(0);
        let r: Result<u32, String> = with_backoff(
            3,
            Duration::from_millis(1),
            |_| true,
            || async {
                let i = n.fetch_add(1, Ordering::SeqCst);
                if i < 2 {
                    Err(format!("busy {i}"))
                } else {
                    Ok(i)
                }
            },
        )
        .await;
        assert_eq!(r, Ok(2));
        n.store(0, Ordering::SeqCst);
        let r: Result<u32, String> = with_backoff(
            2,
            Duration::from_millis(1),
            |_| true,
            || async { Err(format!("busy {}", n.fetch_add(1, Ordering::SeqCst))) },
        )
        .await;
        assert_eq!(r, Err("busy 1".into()), "two attempts, the last error");
        n.store(0, Ordering::SeqCst);
        let r: Result<u32, String> = with_backoff(
            5,
            Duration::from_millis(1),
            |e: &String| e != "fatal",
            || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err("fatal".to_string())
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 1, "not retried");
    }
}
