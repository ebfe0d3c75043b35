//! Runs a user [`Processor`] as a node.

use super::{downcast, AnyRecord, Node, NodeContext};
use crate::error::ProcessError;
use crate::processor::{Processor, ProcessorContext};
use crate::punctuation::PunctuationId;
use crate::record::{Data, Record};

pub(crate) struct ProcessorNode<KIn, VIn, KOut, VOut> {
    pub(crate) processor: Box<dyn Processor<KIn, VIn, KOut, VOut>>,
}

impl<KIn: Data, VIn: Data, KOut: Data, VOut: Data> Node for ProcessorNode<KIn, VIn, KOut, VOut> {
    fn init(&mut self, ctx: &mut NodeContext<'_>) -> Result<(), ProcessError> {
        self.processor.init(&mut ProcessorContext::new(ctx.reborrow()))
    }

    fn process(&mut self, ctx: &mut NodeContext<'_>, record: AnyRecord) -> Result<(), ProcessError> {
        let record: Record<KIn, VIn> = downcast(ctx, record)?;
        self.processor.process(&mut ProcessorContext::new(ctx.reborrow()), record)
    }

    fn punctuate(
        &mut self,
        ctx: &mut NodeContext<'_>,
        id: PunctuationId,
        timestamp_ms: i64,
    ) -> Result<(), ProcessError> {
        self.processor.punctuate(&mut ProcessorContext::new(ctx.reborrow()), id, timestamp_ms)
    }

    fn on_timer(&mut self, ctx: &mut NodeContext<'_>, timer_key: &[u8], fire_at_ms: i64) -> Result<(), ProcessError> {
        self.processor.on_timer(&mut ProcessorContext::new(ctx.reborrow()), timer_key, fire_at_ms)
    }

    fn before_commit(&mut self, ctx: &mut NodeContext<'_>) -> Result<(), ProcessError> {
        self.processor.before_commit(&mut ProcessorContext::new(ctx.reborrow()))
    }
}
