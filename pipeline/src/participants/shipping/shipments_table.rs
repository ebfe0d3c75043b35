//! The `shipments` table (connectors/migrations/0003_participants.sql), from the synchronous
//! stream thread: tokio-postgres on a private current-thread runtime, every call with a timeout.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::gateway::{Cancellation, Shipment, ShipmentError};

const INSERT: &str = "INSERT INTO shipments (order_id, shipment_id, tracking_number) VALUES ($1, $2::text::uuid, $3) \
                      ON CONFLICT (order_id) DO NOTHING RETURNING shipment_id::text, tracking_number";
const SELECT: &str = "SELECT shipment_id::text, tracking_number FROM shipments WHERE order_id = $1";
const INSERT_MANY: &str = "INSERT INTO shipments (order_id, shipment_id, tracking_number) \
                           SELECT order_id, shipment_id::uuid, tracking_number FROM unnest($1::text[], $2::text[], $3::text[]) \
                           AS candidate (order_id, shipment_id, tracking_number) \
                           ON CONFLICT (order_id) DO NOTHING RETURNING order_id, shipment_id::text, tracking_number";
const SELECT_MANY: &str =
    "SELECT order_id, shipment_id::text, tracking_number FROM shipments WHERE order_id = ANY($1::text[])";
/// Cancels once; a shipment already cancelled stays so, one past the handover stays live.
const CANCEL: &str = "UPDATE shipments SET cancelled_at = coalesce(cancelled_at, now()) \
                      WHERE order_id = $1 AND shipment_id = $2::text::uuid \
                      AND (cancelled_at IS NOT NULL OR $3::bigint IS NULL OR created_at > now() - $3::bigint * interval '1 millisecond') \
                      RETURNING 1";

pub(super) struct ShipmentsTable {
    config: Config,
    timeout: Duration,
    handover_after_ms: Option<i64>,
    runtime: Runtime,
    /// Kept between calls while healthy.
    client: Option<Connected>,
}

/// A connection and its statements, prepared once: a per-call query string would cost a parse
/// round trip on every order.
struct Connected {
    client: Client,
    insert: Statement,
    select: Statement,
    cancel: Statement,
    insert_many: Statement,
    select_many: Statement,
}

impl ShipmentsTable {
    pub(super) fn new(
        database_url: &str,
        timeout: Duration,
        handover_after: Option<Duration>,
    ) -> Result<Self, ShipmentError> {
        let mut config: Config =
            database_url.parse().map_err(|e| ShipmentError::permanent(format!("database url is invalid: {e}")))?;
        config.connect_timeout(timeout);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ShipmentError::permanent(format!("cannot start the runtime of the shipments table: {e}")))?;
        let handover_after_ms = handover_after.map(|after| i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
        Ok(ShipmentsTable { config, timeout, handover_after_ms, runtime, client: None })
    }

    /// Inserts a new shipment for the order unless it has one; returns the one on record.
    pub(super) fn insert_or_fetch(&mut self, order_id: &str) -> Result<Shipment, ShipmentError> {
        let candidate =
            Shipment { shipment_id: uuid::Uuid::new_v4().to_string(), tracking_number: new_tracking_number() };
        let connected = self.connected()?;
        let Connected { client, insert, select, .. } = &connected;
        let query = async {
            let inserted =
                client.query_opt(insert, &[&order_id, &candidate.shipment_id, &candidate.tracking_number]).await?;
            match inserted {
                Some(row) => Ok(Some(row)),
                None => client.query_opt(select, &[&order_id]).await,
            }
        };
        // On any error the client is dropped here, and the next call reconnects.
        let row = self.call(query)?;
        self.client = Some(connected);
        let row = row.ok_or_else(|| {
            ShipmentError::retriable(format!("the shipment of order {order_id} vanished after a conflict"))
        })?;
        let shipment_id: String =
            row.try_get(0).map_err(|e| ShipmentError::permanent(format!("shipments.shipment_id: {e}")))?;
        let tracking_number: String =
            row.try_get(1).map_err(|e| ShipmentError::permanent(format!("shipments.tracking_number: {e}")))?;
        Ok(Shipment { shipment_id, tracking_number })
    }

    /// [`insert_or_fetch`](Self::insert_or_fetch) for each order, in two statements at most:
    /// one insert of them all, and one read of those that had a shipment already.
    pub(super) fn insert_or_fetch_many(
        &mut self,
        order_ids: &[String],
    ) -> Result<HashMap<String, Shipment>, ShipmentError> {
        let candidates: Vec<Shipment> = order_ids
            .iter()
            .map(|_| Shipment { shipment_id: uuid::Uuid::new_v4().to_string(), tracking_number: new_tracking_number() })
            .collect();
        let shipment_ids: Vec<&str> = candidates.iter().map(|c| c.shipment_id.as_str()).collect();
        let tracking_numbers: Vec<&str> = candidates.iter().map(|c| c.tracking_number.as_str()).collect();
        let connected = self.connected()?;
        let Connected { client, insert_many, select_many, .. } = &connected;
        let query = async {
            let mut rows = client.query(insert_many, &[&order_ids, &shipment_ids, &tracking_numbers]).await?;
            if rows.len() < order_ids.len() {
                let inserted: HashSet<String> = rows.iter().filter_map(|row| row.try_get(0).ok()).collect();
                let existing: Vec<&String> = order_ids.iter().filter(|id| !inserted.contains(*id)).collect();
                rows.extend(client.query(select_many, &[&existing]).await?);
            }
            Ok(rows)
        };
        // On any error the client is dropped here, and the next call reconnects.
        let rows = self.call(query)?;
        self.client = Some(connected);
        let mut shipments = HashMap::with_capacity(rows.len());
        for row in rows {
            let column = |index: usize, name: &str| {
                row.try_get::<_, String>(index).map_err(|e| ShipmentError::permanent(format!("shipments.{name}: {e}")))
            };
            let (order_id, shipment_id, tracking_number) =
                (column(0, "order_id")?, column(1, "shipment_id")?, column(2, "tracking_number")?);
            shipments.insert(order_id, Shipment { shipment_id, tracking_number });
        }
        match order_ids.iter().find(|id| !shipments.contains_key(*id)) {
            Some(missing) => {
                Err(ShipmentError::retriable(format!("the shipment of order {missing} vanished after a conflict")))
            }
            None => Ok(shipments),
        }
    }

    /// Marks the order's shipment cancelled, unless it is past the handover to the carrier.
    pub(super) fn cancel(&mut self, order_id: &str, shipment_id: &str) -> Result<Cancellation, ShipmentError> {
        let connected = self.connected()?;
        let handover_after_ms = self.handover_after_ms;
        let row =
            self.call(connected.client.query_opt(&connected.cancel, &[&order_id, &shipment_id, &handover_after_ms]))?;
        self.client = Some(connected);
        Ok(match row {
            Some(_) => Cancellation::Cancelled,
            None => Cancellation::TooLate { reason: "the shipment is with the carrier".to_owned() },
        })
    }

    /// The open connection, or a new one with its statements prepared.
    fn connected(&mut self) -> Result<Connected, ShipmentError> {
        if let Some(connected) = self.client.take().filter(|connected| !connected.client.is_closed()) {
            return Ok(connected);
        }
        let (client, connection) = self.call(self.config.connect(NoTls))?;
        // Driven whenever the runtime runs a query; ends when the client is dropped.
        self.runtime.spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "connection to the shipments table ended");
            }
        });
        let (insert, select, cancel, insert_many, select_many) = self.call(async {
            tokio::try_join!(
                client.prepare(INSERT),
                client.prepare(SELECT),
                client.prepare(CANCEL),
                client.prepare(INSERT_MANY),
                client.prepare(SELECT_MANY)
            )
        })?;
        Ok(Connected { client, insert, select, cancel, insert_many, select_many })
    }

    fn call<T>(&self, future: impl Future<Output = Result<T, tokio_postgres::Error>>) -> Result<T, ShipmentError> {
        // The timer must be made inside the runtime, so the whole timeout is.
        match self.runtime.block_on(async { tokio::time::timeout(self.timeout, future).await }) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(classify(&error)),
            Err(_) => Err(ShipmentError::unavailable(
                "postgres",
                format!("postgres did not answer within {:?}", self.timeout),
            )),
        }
    }
}

/// No connection, or a server shutting down, is PostgreSQL being unavailable; conflicts and
/// resource limits pass by themselves; other database errors (a missing table, bad SQL) will
/// not go away by trying again.
fn classify(error: &tokio_postgres::Error) -> ShipmentError {
    let message = format!("postgres: {error}");
    match error.as_db_error().map(|db| db.code().code()) {
        None => ShipmentError::unavailable("postgres", message),
        Some(code) if ["08", "57"].iter().any(|class| code.starts_with(class)) => {
            ShipmentError::unavailable("postgres", message)
        }
        Some(code) if ["40", "53"].iter().any(|class| code.starts_with(class)) => ShipmentError::retriable(message),
        Some(_) => ShipmentError::permanent(message),
    }
}

fn new_tracking_number() -> String {
    format!("TRK{}", uuid::Uuid::new_v4().simple().to_string().to_uppercase())
}
