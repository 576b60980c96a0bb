//! Trying again when the server cannot be reached, where that is safe:
//! reads, which change nothing, and posts, which carry a request id the
//! server stores them under once. Everything else reports the failure, so
//! the person decides.

use std::{future::Future, time::Duration};

use crate::{
    error::{Class, Result},
    output::Printer,
};

/// The waits between attempts: about four seconds in all, long enough for a
/// dropped connection or a server restart, short enough for a person.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Runs `attempt` until it gives something other than unavailable, waiting
/// longer each time, and telling the person (on stderr, not in JSON mode)
/// that it tries again.
///
/// # Errors
/// The last attempt's failure.
pub(crate) async fn when_unavailable<T, F, Fut>(out: Printer, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    for wait in BACKOFF {
        match attempt().await {
            Err(err) if err.class == Class::Unavailable => {
                out.note(&crate::text::trying_again(wait));
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
    attempt().await
}
