//! The app under test in the exactly-once tests, after Kafka's `EosTestDriver`'s app: it echoes
//! its input and keeps a running sum per key in a changelog-backed store.
//!
//! Usage: eos_app <bootstrap> <application-id> <instance-id> <input> <echo-topic> <sum-topic> [at-least-once]
//! Runs until its standard input closes, then commits and leaves the group (exit 0). A fatal
//! runtime error exits 1. Tests kill it with SIGKILL to simulate a crash.

use integration_tests::app;
use operators::dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use operators::runtime::ProcessingGuarantee;
use operators::serdes::{I64Serde, StringSerde};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        eprintln!("usage: eos_app <bootstrap> <application-id> <instance-id> <input> <echo-topic> <sum-topic> [at-least-once]");
        std::process::exit(2);
    }
    let (bootstrap, application_id, instance_id, input, echo, sums) =
        (&args[0], &args[1], &args[2], &args[3], &args[4], &args[5]);

    let builder = StreamsBuilder::new();
    let numbers = builder.stream::<String, i64>(input, Consumed::with(StringSerde, I64Serde));
    numbers.to(echo, Produced::with(StringSerde, I64Serde));
    numbers
        .group_by_key(Grouped::with(StringSerde, I64Serde))
        .aggregate(|| 0i64, |_key, value, sum| sum + value, Materialized::as_store("sums").with_value_serde(I64Serde))
        .to_stream()
        .to(sums, Produced::with(StringSerde, I64Serde));
    let topology = builder.build(application_id);

    let mut config = app::config(bootstrap, application_id, instance_id);
    if args.get(6).map(String::as_str) == Some("at-least-once") {
        config.processing_guarantee = ProcessingGuarantee::AtLeastOnce;
    }
    app::run_until_stdin_closes("eos_app", topology, config);
}
