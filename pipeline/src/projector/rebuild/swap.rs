//! The swap: in one PostgreSQL transaction the live tables become the previous ones and the
//! rebuilt ones take their names, so a reader sees either the old view or the new one, never a
//! half-built one. Readers wait for the moment the swap holds its lock.
//!
//! `create table ... (like ... including all)` gave the rebuilt tables' indexes generated names;
//! the swap gives them the live indexes' names (matched by definition), so a later migration
//! that names an index still finds it.

use anyhow::{Context, Result};
use tokio_postgres::Transaction;

use super::tables::{NEXT, PREVIOUS};
use crate::projector::store::Tables;

/// Blocks every writer and reader of the live tables until the transaction ends: nothing can
/// change the live view between the last check of the live projector and the swap.
pub async fn lock_live(tx: &Transaction<'_>) -> Result<()> {
    let live = Tables::LIVE;
    tx.batch_execute(&format!("lock table {}, {} in access exclusive mode", live.view, live.dedup))
        .await
        .context("locking the live view")
}

/// Moves the live tables to the previous names (dropping an older previous) and the rebuilt
/// ones to the live names, indexes included.
pub async fn swap_in(tx: &Transaction<'_>) -> Result<()> {
    let live = Tables::LIVE;
    for (live, next, previous) in [(live.view, NEXT.view, PREVIOUS.view), (live.dedup, NEXT.dedup, PREVIOUS.dedup)] {
        let live_indexes = indexes(tx, live).await?;
        let next_indexes = indexes(tx, next).await?;
        let mut sql = format!("drop table if exists {previous}; alter table {live} rename to {previous}; ");
        for index in &live_indexes {
            sql += &format!(
                "alter index {} rename to {}; ",
                quote(&index.name),
                quote(&format!("{}_previous", index.name))
            );
        }
        sql += &format!("alter table {next} rename to {live}; ");
        for (from, to) in index_renames(&live_indexes, &next_indexes) {
            sql += &format!("alter index {} rename to {}; ", quote(from), quote(to));
        }
        tx.batch_execute(&sql).await.with_context(|| format!("swapping {next} in as {live}"))?;
    }
    Ok(())
}

/// Rows of the swapped-in view that differ from the view it replaced (or exist in only one),
/// `updated_at` aside: what the rebuild changed.
pub async fn rows_changed(client: &tokio_postgres::Client) -> Result<i64> {
    let sql = format!(
        "select count(*) from {live} rebuilt full join {previous} replaced using (order_id) \
         where (to_jsonb(rebuilt) - 'updated_at') is distinct from (to_jsonb(replaced) - 'updated_at')",
        live = Tables::LIVE.view,
        previous = PREVIOUS.view
    );
    Ok(client.query_one(&sql, &[]).await.context("comparing the new view with the previous one")?.get(0))
}

#[derive(Debug, PartialEq)]
struct Index {
    name: String,
    /// Unique or not, and the definition after `USING` (method, columns, predicate).
    shape: (bool, String),
}

async fn indexes(tx: &Transaction<'_>, table: &str) -> Result<Vec<Index>> {
    let rows = tx
        .query(
            "select c.relname::text, x.indisunique, regexp_replace(pg_get_indexdef(c.oid), '^.* USING ', '') \
             from pg_index x join pg_class c on c.oid = x.indexrelid \
             where x.indrelid = $1::text::regclass order by c.relname",
            &[&table],
        )
        .await
        .with_context(|| format!("listing the indexes of {table}"))?;
    Ok(rows.iter().map(|row| Index { name: row.get(0), shape: (row.get(1), row.get(2)) }).collect())
}

/// Each rebuilt index gets the name of the live index with the same shape, each name once.
fn index_renames<'a>(live: &'a [Index], next: &'a [Index]) -> Vec<(&'a str, &'a str)> {
    let mut unused: Vec<&Index> = live.iter().collect();
    next.iter()
        .filter_map(|index| {
            let position = unused.iter().position(|candidate| candidate.shape == index.shape)?;
            Some((index.name.as_str(), unused.remove(position).name.as_str()))
        })
        .collect()
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str, unique: bool, shape: &str) -> Index {
        Index { name: name.to_string(), shape: (unique, shape.to_string()) }
    }

    #[test]
    fn rebuilt_indexes_take_the_live_names_by_definition() {
        let live = [
            index("order_view_by_customer", false, "btree (customer_id, placed_at DESC NULLS LAST, order_id)"),
            index("order_view_pkey", true, "btree (order_id)"),
            index("order_view_twin_a", false, "btree (status)"),
            index("order_view_twin_b", false, "btree (status)"),
        ];
        let next = [
            index(
                "order_view_next_customer_id_placed_at_order_id_idx",
                false,
                "btree (customer_id, placed_at DESC NULLS LAST, order_id)",
            ),
            index("order_view_next_pkey", true, "btree (order_id)"),
            index("order_view_next_status_idx", false, "btree (status)"),
            index("order_view_next_status_idx1", false, "btree (status)"),
            index("order_view_next_extra", false, "btree (item_count)"),
        ];
        assert_eq!(
            index_renames(&live, &next),
            [
                ("order_view_next_customer_id_placed_at_order_id_idx", "order_view_by_customer"),
                ("order_view_next_pkey", "order_view_pkey"),
                ("order_view_next_status_idx", "order_view_twin_a"),
                ("order_view_next_status_idx1", "order_view_twin_b"),
            ],
            "each live name used once; an index without a live twin keeps its name"
        );
    }

    #[test]
    fn a_unique_index_is_not_mistaken_for_a_plain_one() {
        let live = [index("plain", false, "btree (order_id)")];
        let next = [index("next_unique", true, "btree (order_id)")];
        assert!(index_renames(&live, &next).is_empty());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("order_view"), "\"order_view\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
