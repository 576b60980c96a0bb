//! Periodic work (the sweep, the retention purge, audit checkpoints) runs
//! once per period however many replicas share the store: each period, the
//! replica that takes the store's lease does it.

use std::time::Duration;

use crate::services::Context;

/// Whether this replica does `task` in this period of length `period`. A
/// store that cannot be asked now means no: the next period asks again.
pub(crate) async fn my_turn(ctx: &Context, task: &str, period: Duration) -> bool {
    match ctx.store.lease(task, period).await {
        Ok(mine) => mine,
        Err(err) => {
            tracing::warn!(task, cause = %err, "cannot take the lease of periodic work; next period");
            false
        }
    }
}
