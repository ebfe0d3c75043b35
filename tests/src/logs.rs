//! The runtime's logs in a test's captured output, so that a failing stack test shows what the
//! instance under test did. `RUST_LOG` overrides the default filter.

pub fn capture() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("operators=info,pipeline=info"));
    // Another test of the same binary may have installed it first; either captures.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}
