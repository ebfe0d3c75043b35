//! fjall against RocksDB on what `operators`' persistent store does with its engine:
//!   restore    N changelog records written in batches of 10,000 (as a restore writes them),
//!              then flushed to tables (as a checkpoint does);
//!   reopen     the store opened again after that clean close;
//!   aggregate  a count per key over M distinct keys: get, then the commit's batch of 1,000
//!              writes, as a task's count commits every transaction.
//! Each engine and case runs in a child process, so the peak RSS printed is its own.
//!
//! Build each engine in its own run to time its build (docs/benchmarks.md):
//!   cargo build --release --no-default-features --features fjall
//!   cargo build --release --no-default-features --features rocksdb
//! Usage: store-engines [--entries 1000000,5000000] [--keys 1000000]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const RESTORE_BATCH: u64 = 10_000;
const COMMIT_BATCH: u64 = 1_000;

/// The few calls the comparison needs, over either engine.
trait Engine {
    fn write_batch(&mut self, entries: &mut dyn Iterator<Item = ([u8; 8], [u8; 8])>);
    fn get(&self, key: &[u8; 8]) -> Option<u64>;
    fn flush(&mut self);
}

#[cfg(feature = "fjall")]
mod fjall_engine {
    use super::Engine;
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

    pub struct Fjall {
        db: Database,
        keyspace: Keyspace,
    }

    pub fn open(dir: &std::path::Path) -> Fjall {
        let db = Database::builder(dir).open().expect("opening fjall");
        let keyspace = db.keyspace("store", KeyspaceCreateOptions::default).expect("a keyspace");
        Fjall { db, keyspace }
    }

    impl Engine for Fjall {
        fn write_batch(&mut self, entries: &mut dyn Iterator<Item = ([u8; 8], [u8; 8])>) {
            let mut batch = self.db.batch();
            for (key, value) in entries {
                batch.insert(&self.keyspace, key, value);
            }
            batch.commit().expect("a fjall batch");
        }

        fn get(&self, key: &[u8; 8]) -> Option<u64> {
            let value = self.keyspace.get(key).expect("a fjall read")?;
            Some(u64::from_be_bytes(value.as_ref().try_into().expect("8 bytes")))
        }

        fn flush(&mut self) {
            self.keyspace.rotate_memtable_and_wait().expect("a fjall flush");
            self.db.persist(PersistMode::SyncAll).expect("a fjall sync");
        }
    }
}

#[cfg(feature = "rocksdb")]
mod rocksdb_engine {
    use super::Engine;
    use rocksdb::{FlushOptions, Options, WriteBatch, DB};

    pub struct Rocks(DB);

    pub fn open(dir: &std::path::Path) -> Rocks {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        Rocks(DB::open(&options, dir).expect("opening rocksdb"))
    }

    impl Engine for Rocks {
        fn write_batch(&mut self, entries: &mut dyn Iterator<Item = ([u8; 8], [u8; 8])>) {
            let mut batch = WriteBatch::default();
            for (key, value) in entries {
                batch.put(key, value);
            }
            self.0.write(batch).expect("a rocksdb batch");
        }

        fn get(&self, key: &[u8; 8]) -> Option<u64> {
            let value = self.0.get_pinned(key).expect("a rocksdb read")?;
            Some(u64::from_be_bytes(value.as_ref().try_into().expect("8 bytes")))
        }

        fn flush(&mut self) {
            let mut options = FlushOptions::default();
            options.set_wait(true);
            self.0.flush_opt(&options).expect("a rocksdb flush");
        }
    }
}

fn open(engine: &str, dir: &Path) -> Box<dyn Engine> {
    match engine {
        #[cfg(feature = "fjall")]
        "fjall" => Box::new(fjall_engine::open(dir)),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Box::new(rocksdb_engine::open(dir)),
        other => panic!("engine {other} is not built in (features: fjall, rocksdb)"),
    }
}

fn engines() -> Vec<&'static str> {
    [cfg!(feature = "fjall").then_some("fjall"), cfg!(feature = "rocksdb").then_some("rocksdb")]
        .into_iter()
        .flatten()
        .collect()
}

/// A key spread over the keyspace, as hashed order ids are.
fn key(n: u64) -> [u8; 8] {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes()
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Runs one case in this process and prints "seconds peak_rss_mb".
fn child(engine: &str, case: &str, n: u64, dir: &Path) {
    let started = Instant::now();
    match case {
        "restore" => {
            let mut store = open(engine, dir);
            let mut written = 0;
            while written < n {
                let upto = (written + RESTORE_BATCH).min(n);
                store.write_batch(&mut (written..upto).map(|i| (key(i), i.to_be_bytes())));
                written = upto;
            }
            store.flush();
        }
        "reopen" => {
            let store = open(engine, dir);
            assert!(store.get(&key(n - 1)).is_some(), "the restored entries are there");
        }
        "aggregate" => {
            let mut store = open(engine, dir);
            let mut pending = Vec::with_capacity(COMMIT_BATCH as usize);
            // Two passes over the keys: half the reads miss, half find the count.
            for i in 0..2 * n {
                let k = key(i % n);
                let count = store.get(&k).unwrap_or(0) + 1;
                pending.push((k, count.to_be_bytes()));
                if pending.len() as u64 == COMMIT_BATCH {
                    store.write_batch(&mut pending.drain(..));
                }
            }
            store.write_batch(&mut pending.drain(..));
        }
        other => panic!("unknown case {other}"),
    }
    println!("{:.2} {:.0}", started.elapsed().as_secs_f64(), peak_rss_mb());
}

fn run_child(engine: &str, case: &str, n: u64, dir: &Path) -> (f64, f64) {
    let exe = std::env::current_exe().expect("this binary");
    let output =
        Command::new(exe).args(["--child", engine, case, &n.to_string()]).arg(dir).output().expect("a child run");
    assert!(output.status.success(), "{engine} {case} {n}: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().expect("a figure"));
    (fields.next().expect("seconds"), fields.next().expect("rss"))
}

fn list(value: &str) -> Vec<u64> {
    value.split(',').map(|v| v.parse().unwrap_or_else(|_| panic!("not a number: {v}"))).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let n = args[3].parse().expect("a count");
        return child(&args[1], &args[2], n, Path::new(&args[4]));
    }
    let (mut entries, mut keys) = (vec![1_000_000, 5_000_000], vec![1_000_000]);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--entries", Some(value)) => entries = list(&value),
            ("--keys", Some(value)) => keys = list(&value),
            _ => panic!("usage: store-engines [--entries N,..] [--keys M,..]"),
        }
    }
    println!("store-engines: 8-byte keys and values, lz4; engines built in: {:?}", engines());
    println!(
        "{:<8} {:<10} {:>10} {:>9} {:>12} {:>13} {:>9}",
        "engine", "case", "entries", "seconds", "records/s", "peak RSS MB", "disk MB"
    );
    for engine in engines() {
        for (case, sizes) in [("restore", &entries), ("aggregate", &keys)] {
            for &n in sizes {
                let dir = tempfile::tempdir().expect("a directory");
                // The aggregate starts from an empty store of its own.
                let mut cases = vec![case];
                if case == "restore" {
                    cases.push("reopen");
                }
                for case in cases {
                    let (seconds, rss) = run_child(engine, case, n, dir.path());
                    let rate = match case {
                        "reopen" => String::from("-"),
                        "aggregate" => format!("{:.0}", 2.0 * n as f64 / seconds),
                        _ => format!("{:.0}", n as f64 / seconds),
                    };
                    println!(
                        "{engine:<8} {case:<10} {n:>10} {seconds:>9.2} {rate:>12} {rss:>13.0} {:>9.1}",
                        disk_mb(dir.path())
                    );
                }
            }
        }
    }
}

fn disk_mb(dir: &Path) -> f64 {
    fn walk(path: &Path) -> u64 {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                std::fs::read_dir(path).map(|entries| entries.flatten().map(|e| walk(&e.path())).sum()).unwrap_or(0)
            }
            Ok(meta) => meta.len(),
            Err(_) => 0,
        }
    }
    walk(dir) as f64 / 1_048_576.0
}
