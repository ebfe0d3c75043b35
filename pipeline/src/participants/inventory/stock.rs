//! The product-keyed half of inventory: grants requests that stock covers and takes back
//! released units.

use std::sync::Arc;

use operators::error::ProcessError;
use operators::processor::{Processor, ProcessorContext};
use operators::record::Record;

use super::config::InventoryConfig;
use super::state::{ProductStock, StockReply, StockRequest};
use super::stores::STOCK_STORE;

/// Keyed by product id; answers each reservation request with a reply keyed by order id.
pub(super) struct ReserveStock {
    pub(super) config: Arc<InventoryConfig>,
}

/// Keyed by product id; puts released units back. Emits nothing.
pub(super) struct ReleaseStock {
    pub(super) config: Arc<InventoryConfig>,
}

impl Processor<String, StockRequest, String, StockReply> for ReserveStock {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, StockReply>,
        record: Record<String, StockRequest>,
    ) -> Result<(), ProcessError> {
        let request = &record.value;
        let mut stock = ctx.kv_store::<String, ProductStock>(STOCK_STORE)?;
        let mut product = stock
            .get(&record.key)?
            .unwrap_or_else(|| ProductStock { available: self.config.initial_stock(&record.key) });
        let wanted = i64::from(request.quantity);
        let granted = wanted > 0 && product.available >= wanted;
        if granted {
            product.available -= wanted;
        }
        // Written even when nothing moved, so a product's starting stock is on record.
        stock.put(&record.key, &product)?;
        let answer = StockReply { product_id: request.product_id.clone(), quantity: request.quantity, granted };
        ctx.forward(Record::new(request.order_id.clone(), answer, record.timestamp_ms).with_headers(record.headers))
    }
}

impl Processor<String, StockRequest, String, StockRequest> for ReleaseStock {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, StockRequest>,
        record: Record<String, StockRequest>,
    ) -> Result<(), ProcessError> {
        let mut stock = ctx.kv_store::<String, ProductStock>(STOCK_STORE)?;
        let mut product = stock
            .get(&record.key)?
            .unwrap_or_else(|| ProductStock { available: self.config.initial_stock(&record.key) });
        product.available = product.available.saturating_add(i64::from(record.value.quantity.max(0)));
        stock.put(&record.key, &product)
    }
}
