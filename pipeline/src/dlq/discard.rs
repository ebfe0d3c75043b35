//! Discarding: an operator decides a dead letter is not to be processed, and says why. The entry
//! is locked and checked PENDING like a reprocess, so a discard and a reprocess never both win.

use deadpool_postgres::Pool;

use super::entry::Status;
use super::internal_events::EntryDiscarded;
use super::outcome::Outcome;
use super::request::Actor;
use super::store::{self, DlqStoreError};

pub async fn discard_one(pool: &Pool, id: i64, actor: &Actor) -> Result<Outcome, DlqStoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    match store::lock(&tx, id).await? {
        None => return Ok(Outcome::NotFound),
        Some(entry) if !entry.is_pending() => return Ok(Outcome::NotPending { status: entry.status }),
        Some(_) => {}
    }
    store::set_status(&tx, id, Status::Discarded, &actor.operator, actor.reason.as_deref()).await?;
    tx.commit().await?;
    EntryDiscarded { id }.emit();
    Ok(Outcome::Done)
}
