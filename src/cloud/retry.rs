//! Retrying a Cloud call: transient errors are retried after Cloud's own hint (`retryAfterMs`
//! or `retry-after`) when it gave one, else after exponential backoff with full jitter; other
//! errors are returned at once.

use std::future::Future;
use std::time::Duration;

use super::error::CloudError;
use crate::net::backoff::Backoff;

/// Calls `operation` up to `attempts` times.
pub async fn with_retry<T, F, Fut>(attempts: u32, mut operation: F) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CloudError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut attempt = 1;
    loop {
        match operation().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() && attempt < attempts => {
                let wait = error.retry_after.unwrap_or_else(|| backoff.next_delay());
                tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %crate::config::redact::Redacted(&error), "retrying a Cloud call");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::error::CloudErrorKind;
    use std::cell::Cell;

    fn rate_limited(ms: u64) -> CloudError {
        CloudError::from_response(
            429,
            format!("{{\"error\":\"Too many cloud requests. Try again later.\",\"retryAfterMs\":{ms}}}").as_bytes(),
            Some("9"),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn waits_exactly_the_retry_hint() {
        let calls = Cell::new(0);
        let start = tokio::time::Instant::now();
        let result = with_retry(3, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n == 1 {
                    Err(rate_limited(1_500))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(2));
        assert_eq!(start.elapsed(), Duration::from_millis(1_500), "retryAfterMs wins over the header and over backoff");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_and_exhausted_attempts_return() {
        let calls = Cell::new(0);
        let result: Result<(), _> = with_retry(5, || {
            calls.set(calls.get() + 1);
            async { Err(CloudError::from_response(403, b"{\"error\":\"no\"}", None)) }
        })
        .await;
        assert_eq!(result.unwrap_err().status, Some(403));
        assert_eq!(calls.get(), 1, "a 403 is not retried");

        calls.set(0);
        let result: Result<(), _> = with_retry(3, || {
            calls.set(calls.get() + 1);
            async { Err(CloudError::transport(CloudErrorKind::Network, "refused")) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.get(), 3);
    }
}
