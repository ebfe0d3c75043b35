//! One order through the four participants under every delivery order the topics allow.
//!
//! Each participant reads each of its topics in order, but nothing orders its topics against
//! each other, or one participant against another: a broker may hand any participant the next
//! record of any of its topics at any time, a participant may be down while the others go
//! on, and a step timer may fire at any point. A schedule is a list of choices among those
//! moves (proptest generates and shrinks them); a customer cancel is injected at any point,
//! including after the order settled. After the schedule, everything still queued is
//! delivered and the clocks run past every timeout, and then the saga's invariants must hold.
//!
//! The repartition topics inside payment and inventory are moves of their own too: a stock
//! reply may come back before or after the next saga event reaches the same participant.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use schemas::{Envelope, EventType, OrderCancellationRequested, OrderInterventionRequested, Payload, SagaEvent};

use super::inventory::{self, InventoryConfig, ProductStock};
use super::order_saga::{self, OrderSagaState, SagaConfig, SagaStatus};
use super::payment::{self, CustomerBalance, PaymentConfig};
use super::shipping::{self, Cancellation, Shipment, ShipmentError, ShipmentGateway, ShippingConfig};
use super::test_support::{order_placed, Driven, T0};
use super::{SagaTopics, RESOLVE, RETRY_COMPENSATIONS};
use crate::event_serde::EventSerde;

const ORDER: &str = "o-1";
const BALANCE: i64 = 10_000;
const STOCK: i64 = 10;

/// Records every shipment; refuses to cancel one once `handed_over` is set.
#[derive(Default)]
struct Carrier {
    live: Mutex<BTreeMap<String, String>>,
    handed_over: AtomicBool,
}

impl ShipmentGateway for Carrier {
    fn create_shipment(&self, order_id: &str) -> Result<Shipment, ShipmentError> {
        let mut live = self.live.lock().map_err(|_| ShipmentError::permanent("poisoned"))?;
        let shipment_id = live.entry(order_id.to_owned()).or_insert_with(|| format!("s-{order_id}")).clone();
        Ok(Shipment { tracking_number: format!("TRK-{shipment_id}"), shipment_id })
    }

    fn cancel_shipment(&self, order_id: &str, _shipment_id: &str) -> Result<Cancellation, ShipmentError> {
        if self.handed_over.load(Ordering::SeqCst) {
            return Ok(Cancellation::TooLate { reason: "handed to the carrier".into() });
        }
        self.live.lock().map_err(|_| ShipmentError::permanent("poisoned"))?.remove(order_id);
        Ok(Cancellation::Cancelled)
    }
}

/// What the order asks for, and so which way it should go.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// Everything succeeds.
    Happy,
    /// The customer cannot pay.
    Poor,
    /// Not enough stock of one product.
    Scarce,
    /// An address shipping refuses.
    Unserved,
}

/// One move of the world.
#[derive(Clone, Copy, Debug)]
enum Move {
    /// The participant takes the next record of one of its topics (picked by the byte).
    Deliver(u8),
    /// Every clock moves on by one of the saga's step timeouts (picked by the byte).
    Tick(u8),
}

struct Participant {
    driven: Driven,
    reads: Vec<String>,
    writes: String,
    /// Per topic read, the records published but not taken yet.
    inbox: BTreeMap<String, VecDeque<SagaEvent>>,
}

struct World {
    participants: Vec<Participant>,
    carrier: Arc<Carrier>,
    saga: SagaConfig,
    /// Every event, in the order it was published.
    log: Vec<SagaEvent>,
    /// Records a participant failed on.
    failed: Vec<String>,
}

const PAYMENT: usize = 0;
const INVENTORY: usize = 1;
const SAGA: usize = 3;

impl World {
    fn new(handed_over: bool) -> World {
        let topics = SagaTopics::default();
        let serde = EventSerde::with_fixed_ids();
        let carrier = Arc::new(Carrier::default());
        carrier.handed_over.store(handed_over, Ordering::SeqCst);
        let payment = PaymentConfig {
            initial_balances: [("poor".to_owned(), 100)].into(),
            default_balance_cents: BALANCE,
            ..Default::default()
        };
        let inventory = InventoryConfig {
            initial_stock: [("rare".to_owned(), 1)].into(),
            default_stock: STOCK,
            ..Default::default()
        };
        let shipping = ShippingConfig::new("unused", "unused", vec!["DE".into()]);
        let saga = SagaConfig::default();
        let participant = |topology, reads: &[&String], writes: &String| Participant {
            driven: Driven::without_feedback(topology),
            reads: reads.iter().map(|topic| (*topic).clone()).collect(),
            writes: writes.clone(),
            inbox: reads.iter().map(|topic| ((*topic).clone(), VecDeque::new())).collect(),
        };
        let participants = vec![
            participant(
                payment::topology(serde.clone(), &payment),
                &[&topics.order, &topics.inventory, &topics.payment],
                &topics.payment,
            ),
            participant(
                inventory::topology(serde.clone(), &inventory),
                &[&topics.order, &topics.payment],
                &topics.inventory,
            ),
            participant(
                shipping::topology_with_gateway(
                    serde.clone(),
                    &shipping,
                    Arc::clone(&carrier) as Arc<dyn ShipmentGateway>,
                ),
                &[&topics.order, &topics.inventory],
                &topics.shipping,
            ),
            participant(
                order_saga::topology(serde, &saga),
                &[&topics.order, &topics.payment, &topics.inventory, &topics.shipping],
                &topics.order,
            ),
        ];
        World { participants, carrier, saga, log: Vec::new(), failed: Vec::new() }
    }

    fn publish(&mut self, topic: &str, event: SagaEvent) {
        self.log.push(event.clone());
        for participant in &mut self.participants {
            if let Some(inbox) = participant.inbox.get_mut(topic) {
                inbox.push_back(event.clone());
            }
        }
    }

    /// Moves what each participant wrote into the inboxes of its readers.
    fn collect(&mut self) -> Result<(), TestCaseError> {
        let mut written = Vec::new();
        for participant in &self.participants {
            for event in participant.driven.read(&participant.writes).map_err(fail)? {
                written.push((participant.writes.clone(), event));
            }
        }
        for (topic, event) in written {
            self.publish(&topic, event);
        }
        Ok(())
    }

    /// Every record waiting: (participant, topic, whether it is one of its repartition topics).
    fn ready(&self) -> Vec<(usize, String, bool)> {
        let mut ready = Vec::new();
        for (index, participant) in self.participants.iter().enumerate() {
            for topic in &participant.reads {
                if participant.inbox.get(topic).is_some_and(|inbox| !inbox.is_empty()) {
                    ready.push((index, topic.clone(), false));
                }
            }
            ready.extend(participant.driven.driver.held_topics().into_iter().map(|topic| (index, topic, true)));
        }
        ready
    }

    fn deliver(&mut self, index: usize, topic: &str, repartition: bool) -> Result<(), TestCaseError> {
        let participant = &mut self.participants[index];
        let outcome = if repartition {
            participant
                .driven
                .driver
                .deliver_held(topic)
                .map(|_| ())
                .map_err(|error| format!("participant {index} failed on {topic}: {error}"))
        } else {
            let Some(event) = participant.inbox.get_mut(topic).and_then(VecDeque::pop_front) else {
                return Ok(());
            };
            participant
                .driven
                .pipe(topic, &event)
                .map_err(|error| format!("participant {index} failed on {}: {error}", event.event_type()))
        };
        if let Err(failure) = outcome {
            self.failed.push(failure);
        }
        self.collect()
    }

    fn tick(&mut self, by: Duration) -> Result<(), TestCaseError> {
        for participant in &self.participants {
            participant.driven.driver.advance_wall_clock_time(by).map_err(fail)?;
        }
        self.collect()
    }

    fn play(&mut self, moves: &[Move]) -> Result<(), TestCaseError> {
        let steps = [self.saga.payment_timeout, self.saga.inventory_timeout, self.saga.shipping_timeout];
        for step in moves {
            match *step {
                Move::Deliver(pick) => {
                    let ready = self.ready();
                    if let Some((index, topic, repartition)) =
                        ready.get(usize::from(pick) % ready.len().max(1)).cloned()
                    {
                        self.deliver(index, &topic, repartition)?;
                    }
                }
                Move::Tick(pick) => self.tick(steps[usize::from(pick) % steps.len()])?,
            }
        }
        Ok(())
    }

    /// Delivers everything still queued, then lets every timer run out, until nothing moves.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..10 {
            while let Some((index, topic, repartition)) = self.ready().first().cloned() {
                self.deliver(index, &topic, repartition)?;
            }
            let before = self.log.len();
            self.tick(self.saga.compensation_timeout + Duration::from_secs(1))?;
            if self.log.len() == before && self.ready().is_empty() {
                return Ok(());
            }
        }
        Err(TestCaseError::fail("the saga never came to rest"))
    }

    fn count(&self, event_type: EventType) -> usize {
        self.log.iter().filter(|event| event.event_type() == event_type).count()
    }

    fn first(&self, event_type: EventType) -> Option<usize> {
        self.log.iter().position(|event| event.event_type() == event_type)
    }

    fn saga_state(&self) -> Result<OrderSagaState, TestCaseError> {
        let store = self.participants[SAGA]
            .driven
            .driver
            .key_value_store::<String, OrderSagaState>(order_saga::ORDERS_STORE)
            .map_err(fail)?;
        store.get(&ORDER.to_owned()).map_err(fail)?.ok_or_else(|| TestCaseError::fail("no saga state"))
    }

    fn balance(&self, customer: &str) -> Result<i64, TestCaseError> {
        let store = self.participants[PAYMENT]
            .driven
            .driver
            .key_value_store::<String, CustomerBalance>(payment::BALANCES_STORE)
            .map_err(fail)?;
        Ok(store.get(&customer.to_owned()).map_err(fail)?.map_or(BALANCE, |balance| balance.balance_cents))
    }

    fn stock(&self, product: &str) -> Result<Option<i64>, TestCaseError> {
        let store = self.participants[INVENTORY]
            .driven
            .driver
            .key_value_store::<String, ProductStock>(inventory::STOCK_STORE)
            .map_err(fail)?;
        Ok(store.get(&product.to_owned()).map_err(fail)?.map(|stock| stock.available))
    }
}

fn fail(error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

fn placed(scenario: Scenario) -> SagaEvent {
    match scenario {
        Scenario::Happy => order_placed(ORDER, "alice", &[("apple", 2, 1_000)], "DE"),
        Scenario::Poor => order_placed(ORDER, "poor", &[("apple", 2, 1_000)], "DE"),
        Scenario::Scarce => order_placed(ORDER, "alice", &[("apple", 2, 1_000), ("rare", 2, 1_000)], "DE"),
        Scenario::Unserved => order_placed(ORDER, "alice", &[("apple", 2, 1_000)], "US"),
    }
}

fn cancel_request(placed: &SagaEvent) -> SagaEvent {
    let requested = OrderCancellationRequested { customer_id: "alice".into(), requested_by: "alice".into() };
    SagaEvent::new(
        Envelope::new(ORDER, placed.envelope.correlation_id.clone(), T0 + 1),
        Payload::OrderCancellationRequested(requested),
    )
}

/// What an operator does about a parked order once the run settled.
#[derive(Clone, Copy, Debug)]
enum Operator {
    /// Nothing: the order stays parked.
    Away,
    /// The carrier gives the shipment back, and the operator retries the compensations.
    Retries,
    /// The operator settles the order as it stands.
    Resolves,
}

fn intervention(placed: &SagaEvent, action: &str) -> SagaEvent {
    let requested = OrderInterventionRequested {
        action: action.into(),
        note: "checked with the carrier".into(),
        operator: "ops".into(),
    };
    SagaEvent::new(
        Envelope::new(ORDER, placed.envelope.correlation_id.clone(), T0 + 2),
        Payload::OrderInterventionRequested(requested),
    )
}

/// Runs one schedule and checks every invariant of the saga.
fn run(scenario: Scenario, moves: &[Move], cancel_at: Option<usize>, handed_over: bool) -> Result<(), TestCaseError> {
    run_with_operator(scenario, moves, cancel_at, handed_over, Operator::Away).map(drop)
}

fn run_with_operator(
    scenario: Scenario,
    moves: &[Move],
    cancel_at: Option<usize>,
    handed_over: bool,
    operator: Operator,
) -> Result<World, TestCaseError> {
    let mut world = World::new(handed_over);
    let placed = placed(scenario);
    let customer = match &placed.payload {
        Payload::OrderPlaced(order) => order.customer_id.clone(),
        _ => unreachable!("placed() builds an OrderPlaced"),
    };
    world.publish("order.events", placed.clone());
    let cancel_at = cancel_at.map(|at| at.min(moves.len() + 1));
    for (at, step) in moves.iter().enumerate() {
        if cancel_at == Some(at) {
            world.publish("order.events", cancel_request(&placed));
        }
        world.play(std::slice::from_ref(step))?;
    }
    if cancel_at == Some(moves.len()) {
        world.publish("order.events", cancel_request(&placed));
    }
    world.settle()?;
    // A cancel after everything settled: too late if the order was confirmed.
    if cancel_at == Some(moves.len() + 1) {
        world.publish("order.events", cancel_request(&placed));
        world.settle()?;
    }
    if world.saga_state()?.status == SagaStatus::RequiresIntervention {
        match operator {
            Operator::Away => {}
            Operator::Retries => {
                world.carrier.handed_over.store(false, Ordering::SeqCst);
                world.publish("order.events", intervention(&placed, RETRY_COMPENSATIONS));
                world.settle()?;
            }
            Operator::Resolves => {
                world.publish("order.events", intervention(&placed, RESOLVE));
                world.settle()?;
            }
        }
    }
    check(&world, scenario, &customer, cancel_at.is_some())?;
    Ok(world)
}

fn check(world: &World, scenario: Scenario, customer: &str, cancel_requested: bool) -> Result<(), TestCaseError> {
    let trace = || world.log.iter().map(|event| event.event_type().as_str()).collect::<Vec<_>>().join(" → ");
    let saga = world.saga_state()?;
    prop_assert!(world.failed.is_empty(), "records failed: {:?}\n{}", world.failed, trace());

    // Exactly one terminal state, decided once.
    let terminal =
        matches!(saga.status, SagaStatus::Confirmed | SagaStatus::Cancelled | SagaStatus::RequiresIntervention);
    prop_assert!(terminal, "ended {} instead of a terminal state\n{}", saga.status, trace());
    let decisions = world.count(EventType::OrderConfirmed) + world.count(EventType::OrderCancelled);
    prop_assert_eq!(decisions, 1, "one OrderConfirmed or OrderCancelled\n{}", trace());

    // No event twice (but a request to retry compensations, which is repeatable by design), and
    // no compensation without the step it undoes, or before it.
    for event_type in EventType::ALL.into_iter().filter(|t| *t != EventType::OrderInterventionRequested) {
        prop_assert!(
            world.count(event_type) <= 1,
            "{} published {} times\n{}",
            event_type,
            world.count(event_type),
            trace()
        );
    }
    for (compensation, step) in [
        (EventType::PaymentRefunded, EventType::PaymentCompleted),
        (EventType::InventoryReleased, EventType::InventoryReserved),
        (EventType::ShipmentCancelled, EventType::ShipmentCreated),
    ] {
        if let Some(undone) = world.first(compensation) {
            prop_assert!(
                world.first(step).is_some_and(|done| done < undone),
                "{} without an earlier {}\n{}",
                compensation,
                step,
                trace()
            );
        }
    }

    let charged = world.count(EventType::PaymentCompleted) == 1;
    let reserved = world.count(EventType::InventoryReserved) == 1;
    let shipped = world.count(EventType::ShipmentCreated) == 1;
    let (balance, apples) = (world.balance(customer)?, world.stock("apple")?.unwrap_or(STOCK));
    match saga.status {
        SagaStatus::Confirmed => {
            prop_assert!(charged && reserved && shipped, "confirmed without every step\n{}", trace());
            prop_assert_eq!(world.count(EventType::PaymentRefunded) + world.count(EventType::InventoryReleased), 0);
            prop_assert_eq!(world.count(EventType::ShipmentCancelled), 0);
            prop_assert_eq!(
                (balance, apples),
                (BALANCE - 2_000, STOCK - 2),
                "money or stock of a confirmed order\n{}",
                trace()
            );
            prop_assert!(matches!(scenario, Scenario::Happy), "{:?} confirmed\n{}", scenario, trace());
        }
        SagaStatus::Cancelled if saga.resolution.is_some() => {
            // Settled by a person as it stood: only a shipment the carrier kept may stay live.
            prop_assert!(
                world.carrier.handed_over.load(Ordering::SeqCst) && shipped,
                "resolved without cause\n{}",
                trace()
            );
            prop_assert_eq!(world.count(EventType::ShipmentCancelled), 0);
        }
        SagaStatus::Cancelled => {
            // Every completed step was compensated exactly once, and nothing is held.
            prop_assert_eq!(world.count(EventType::PaymentRefunded), usize::from(charged), "refunds\n{}", trace());
            prop_assert_eq!(world.count(EventType::InventoryReleased), usize::from(reserved), "releases\n{}", trace());
            prop_assert_eq!(
                world.count(EventType::ShipmentCancelled),
                usize::from(shipped),
                "shipment cancels\n{}",
                trace()
            );
            let initial = if customer == "poor" { 100 } else { BALANCE };
            prop_assert_eq!((balance, apples), (initial, STOCK), "money or stock of a cancelled order\n{}", trace());
            prop_assert!(
                world.carrier.live.lock().map_err(fail)?.is_empty(),
                "a live shipment for a cancelled order\n{}",
                trace()
            );
        }
        _ => {
            // Only a shipment the carrier already has may park an order, and the saga says why.
            prop_assert!(
                world.carrier.handed_over.load(Ordering::SeqCst) && shipped,
                "parked without cause\n{}",
                trace()
            );
            prop_assert_eq!(
                world.count(EventType::OrderRequiresIntervention),
                1,
                "the parking is published\n{}",
                trace()
            );
        }
    }
    if cancel_requested && saga.status == SagaStatus::Confirmed {
        prop_assert_eq!(
            world.count(EventType::OrderCancellationRejected),
            1,
            "a cancel of a confirmed order is answered\n{}",
            trace()
        );
    }
    Ok(())
}

fn operators() -> impl Strategy<Value = Operator> {
    prop_oneof![Just(Operator::Away), Just(Operator::Retries), Just(Operator::Resolves)]
}

fn scenarios() -> impl Strategy<Value = Scenario> {
    prop_oneof![Just(Scenario::Happy), Just(Scenario::Poor), Just(Scenario::Scarce), Just(Scenario::Unserved)]
}

fn moves() -> impl Strategy<Value = Vec<Move>> {
    let step = prop_oneof![8 => any::<u8>().prop_map(Move::Deliver), 1 => any::<u8>().prop_map(Move::Tick)];
    proptest::collection::vec(step, 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn every_interleaving_keeps_the_saga_invariants(
        scenario in scenarios(),
        moves in moves(),
        cancel_at in proptest::option::of(0usize..42),
        handed_over in proptest::bool::weighted(0.2),
        operator in operators(),
    ) {
        run_with_operator(scenario, &moves, cancel_at, handed_over, operator)?;
    }
}

/// The races the issue names, as fixed schedules, so they run on every build whatever
/// proptest draws.
#[test]
fn a_cancel_racing_the_shipment_cancels_the_shipment_too() -> Result<(), TestCaseError> {
    // Shipping creates the shipment before it sees the cancel; the saga sees the cancel first.
    let deliver_all = vec![Move::Deliver(0); 12];
    run(Scenario::Happy, &deliver_all, Some(3), false)
}

#[test]
fn a_late_charge_after_a_payment_timeout_is_refunded() -> Result<(), TestCaseError> {
    // The saga's payment timer fires before the charge comes back.
    let mut moves = vec![Move::Tick(0)];
    moves.extend(vec![Move::Deliver(0); 30]);
    run(Scenario::Happy, &moves, None, false)
}

#[test]
fn a_cancel_after_confirmation_is_rejected() -> Result<(), TestCaseError> {
    run(Scenario::Happy, &[], Some(usize::MAX), false)
}

#[test]
fn a_parked_order_is_retried_by_an_operator_once_the_carrier_lets_go() -> Result<(), TestCaseError> {
    // The saga cancels on the customer's request just as shipping creates the shipment; the
    // carrier keeps it, the order is parked, the operator retries once the carrier lets go.
    let world = run_with_operator(Scenario::Happy, &racing_shipment(), Some(0), true, Operator::Retries)?;
    prop_assert_eq!(world.count(EventType::OrderRequiresIntervention), 1, "parked first");
    prop_assert_eq!(world.count(EventType::ShipmentCancelled), 1, "then cancelled after all");
    prop_assert_eq!(world.saga_state()?.status, SagaStatus::Cancelled);
    Ok(())
}

/// Shipping sees the reservation before the cancellation; the saga sees the cancellation first.
fn racing_shipment() -> Vec<Move> {
    // The first ready record is always taken: participants in order (payment, inventory,
    // shipping, saga), each topic in order, so this is a fixed schedule, not a random one.
    let mut moves = vec![Move::Deliver(0); 60];
    moves.insert(0, Move::Deliver(3));
    moves
}

#[test]
fn a_parked_order_is_resolved_by_an_operator_as_it_stands() -> Result<(), TestCaseError> {
    let world = run_with_operator(Scenario::Happy, &racing_shipment(), Some(0), true, Operator::Resolves)?;
    prop_assert_eq!(world.count(EventType::OrderRequiresIntervention), 1, "parked first");
    let saga = world.saga_state()?;
    prop_assert_eq!(
        (saga.status, saga.resolution.as_deref()),
        (SagaStatus::Cancelled, Some("checked with the carrier"))
    );
    Ok(())
}
