//! The app under test in the scale-out exactly-once tests: one sub-topology reading three
//! co-partitioned topics, with a store and a durable timer, so a task is only correct if one
//! instance owns partition p of all three topics.
//!
//! Usage: eos_join_app <bootstrap> <application-id> <instance-id> <topic-a> <topic-b> <topic-c> <echo-topic> <sum-topic> <fired-topic>
//! For each record (key, n) it forwards (key, n) to the echo topic and the key's running sum to
//! the sum topic, and sets a durable timer that later forwards (key, n) to the fired topic.
//! Runs until its standard input closes (exit 0); a fatal runtime error exits 1.

use integration_tests::app;
use operators::dsl::{Consumed, Processed, Produced, StreamsBuilder};
use operators::error::ProcessError;
use operators::processor::{Processor, ProcessorContext};
use operators::record::Record;
use operators::serdes::{I64Serde, StringSerde};
use operators::store::StoreBuilder;

const SUMS: &str = "sums";
const ECHO_SINK: &str = "echo-sink";
const SUM_SINK: &str = "sum-sink";
const FIRED_SINK: &str = "fired-sink";
/// Long enough that timers are often pending when an instance is killed or partitions move.
const TIMER_DELAY_MS: i64 = 300;

struct EchoSumFire;

impl Processor<String, i64> for EchoSumFire {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, i64>,
    ) -> Result<(), ProcessError> {
        let (key, n, timestamp_ms) = (record.key, record.value, record.timestamp_ms);
        let mut sums = ctx.kv_store::<String, i64>(SUMS)?;
        let sum = sums.get(&key)?.unwrap_or(0) + n;
        sums.put(&key, &sum)?;
        ctx.forward_to(ECHO_SINK, Record::new(key.clone(), n, timestamp_ms))?;
        ctx.forward_to(SUM_SINK, Record::new(key.clone(), sum, timestamp_ms))?;
        let fire_at_ms = ctx.current_system_time_ms() + TIMER_DELAY_MS;
        ctx.schedule_timer(&timer_key(n, &key), fire_at_ms)
    }

    fn on_timer(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        timer_key: &[u8],
        fire_at_ms: i64,
    ) -> Result<(), ProcessError> {
        let (n, key) = parse_timer_key(timer_key)?;
        ctx.forward_to(FIRED_SINK, Record::new(key, n, fire_at_ms))
    }
}

/// n's 8 bytes (unique per record) followed by the record key, so the timer needs no lookup.
fn timer_key(n: i64, key: &str) -> Vec<u8> {
    [&n.to_be_bytes()[..], key.as_bytes()].concat()
}

fn parse_timer_key(timer_key: &[u8]) -> Result<(i64, String), ProcessError> {
    let malformed = || ProcessError::processing(format!("malformed timer key {timer_key:?}"));
    let (n, key) = timer_key.split_at_checked(8).ok_or_else(malformed)?;
    let n = i64::from_be_bytes(n.try_into().map_err(|_| malformed())?);
    let key = String::from_utf8(key.to_vec()).map_err(|_| malformed())?;
    Ok((n, key))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 9 {
        eprintln!(
            "usage: eos_join_app <bootstrap> <application-id> <instance-id> <topic-a> <topic-b> <topic-c> <echo-topic> <sum-topic> <fired-topic>"
        );
        std::process::exit(2);
    }
    let (bootstrap, application_id, instance_id) = (&args[0], &args[1], &args[2]);
    let (inputs, (echo, sums, fired)) = (&args[3..6], (&args[6], &args[7], &args[8]));

    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value(SUMS, StringSerde, I64Serde));
    let stream = |topic: &String| builder.stream::<String, i64>(topic, Consumed::with(StringSerde, I64Serde));
    let outputs = stream(&inputs[0])
        .merge(&stream(&inputs[1]))
        .merge(&stream(&inputs[2]))
        .process_with(|| EchoSumFire, Processed::named("echo-sum-fire").with_stores(&[SUMS]).with_durable_timers());
    outputs.to(echo, Produced::with(StringSerde, I64Serde).with_name(ECHO_SINK));
    outputs.to(sums, Produced::with(StringSerde, I64Serde).with_name(SUM_SINK));
    outputs.to(fired, Produced::with(StringSerde, I64Serde).with_name(FIRED_SINK));
    let topology = builder.build(application_id);

    app::run_until_stdin_closes("eos_join_app", topology, app::config(bootstrap, application_id, instance_id));
}
