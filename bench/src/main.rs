//! Prints throughput and latency of four cases on one 6-partition topic, against the local
//! stack (`dev/stack up`):
//!   (a) bare rdkafka passthrough, at-least-once — the machine's ceiling
//!   (b) the same passthrough as an operators topology, at-least-once
//!   (c) that topology, exactly-once
//!   (d) a stateful aggregate (count per key), exactly-once
//!
//! Usage: operators-bench [--records N] [--rate R] [--seconds S] [--case a|b|c|d]...
//! Throughput: N records preloaded, drained from the first output to the last.
//! Latency: R records/s for S seconds while the case runs, produce → visible `read_committed`.

mod cases;
mod load;
mod measure;
mod passthrough;

use std::time::Duration;

use anyhow::{bail, Context, Result};

struct Options {
    bootstrap: String,
    records: u64,
    rate: u64,
    seconds: u64,
    cases: Vec<cases::Case>,
}

fn parse_options() -> Result<Options> {
    let port = std::env::var("KAFKA_PORT").unwrap_or_else(|_| "9092".into());
    let mut options = Options {
        bootstrap: format!("127.0.0.1:{port}"),
        records: 200_000,
        rate: 2_000,
        seconds: 10,
        cases: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--records" => options.records = value()?.parse().context("--records")?,
            "--rate" => options.rate = value()?.parse().context("--rate")?,
            "--seconds" => options.seconds = value()?.parse().context("--seconds")?,
            "--bootstrap" => options.bootstrap = value()?,
            "--case" => options.cases.push(cases::Case::parse(&value()?)?),
            other => bail!("unknown argument {other}; see the header of bench/src/main.rs"),
        }
    }
    if options.cases.is_empty() {
        options.cases = cases::Case::ALL.to_vec();
    }
    Ok(options)
}

fn main() -> Result<()> {
    let options = parse_options()?;
    println!(
        "operators-bench: {} records preloaded, then {} rec/s for {} s; 6 partitions; broker {}",
        options.records, options.rate, options.seconds, options.bootstrap
    );
    println!("{:<44} {:>12} {:>10} {:>10}", "case", "records/s", "p50 ms", "p99 ms");
    let mut results = Vec::new();
    for case in &options.cases {
        let result =
            cases::run(*case, &options.bootstrap, options.records, options.rate, Duration::from_secs(options.seconds))?;
        println!("{:<44} {:>12.0} {:>10.1} {:>10.1}", case.describe(), result.throughput, result.p50_ms, result.p99_ms);
        results.push((*case, result));
    }
    let find = |c: cases::Case| results.iter().find(|(case, _)| *case == c).map(|(_, r)| r.throughput);
    if let (Some(a), Some(c)) = (find(cases::Case::BarePassthrough), find(cases::Case::ExactlyOncePassthrough)) {
        println!("(c)/(a) throughput ratio: {:.2} (target ≥ 0.90)", c / a);
    }
    Ok(())
}
