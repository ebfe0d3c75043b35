//! Exactly-once with several instances in one group, after Kafka's `streams_eos_test.py`: a
//! generator writes to three co-partitioned topics, `eos_join_app` instances (separate
//! processes) join, leave, stop and are killed with SIGKILL, and the verifier checks the
//! `read_committed` outputs. The app's one sub-topology reads all three topics into a store and
//! durable timers, so partition p of every input must belong to the same instance.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integration_tests::eos::generate_over;
use integration_tests::eos_verifier::{read_outputs, verify, ByKey};
use integration_tests::kafka::{create_topic, CommittedCounter};
use integration_tests::stack::{kafka_bootstrap, unique};

const PARTITIONS: i32 = 6;
const READ_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Enough for three members to join and the rebalance to finish.
const SETTLE: Duration = Duration::from_secs(5);

/// Each schedule runs several app processes: one schedule at a time, so two cores suffice. An
/// async lock: it is held across the awaits of a whole test, and a failed test must not poison it.
static ONE_SCHEDULE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One test's topics and application id.
struct Run {
    name: &'static str,
    bootstrap: String,
    application_id: String,
    inputs: [String; 3],
    echo: String,
    sums: String,
    fired: String,
    /// Set: every store is persistent, each instance's in its own directory under this one.
    state_dir: Option<tempfile::TempDir>,
}

impl Run {
    async fn new(name: &'static str) -> Self {
        let bootstrap = kafka_bootstrap();
        let id = unique(name);
        let run = Run {
            name,
            application_id: format!("{id}-app"),
            inputs: ["a", "b", "c"].map(|input| format!("{id}-input-{input}")),
            echo: format!("{id}-echo"),
            sums: format!("{id}-sums"),
            fired: format!("{id}-fired"),
            bootstrap,
            state_dir: None,
        };
        for topic in run.inputs.iter().chain([&run.echo, &run.sums, &run.fired]) {
            create_topic(&run.bootstrap, topic, PARTITIONS).await;
        }
        run
    }

    /// Writes records 1..=total in `batches` batches, `pause` apart, while the test goes on.
    fn generate_in_background(&self, total: i64, batches: i64, pause: Duration) -> JoinHandle<ByKey> {
        let (bootstrap, inputs) = (self.bootstrap.clone(), self.inputs.clone());
        std::thread::spawn(move || {
            let topics: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let mut sent = ByKey::new();
            let size = total / batches;
            for batch in 0..batches {
                if batch > 0 {
                    std::thread::sleep(pause);
                }
                let count = if batch == batches - 1 { total - size * batch } else { size };
                for (key, values) in generate_over(&bootstrap, &topics, 1 + size * batch, count) {
                    sent.entry(key).or_default().extend(values);
                }
            }
            sent
        })
    }

    async fn with_persistent_stores(name: &'static str) -> Self {
        let state_dir = tempfile::tempdir().expect("a temporary state directory");
        Run { state_dir: Some(state_dir), ..Run::new(name).await }
    }

    /// The checkpoints an instance's clean stop left behind, one per task and store.
    fn checkpoints_of(&self, instance: &str) -> usize {
        let Some(state_dir) = &self.state_dir else { return 0 };
        let checkpoints = state_dir.path().join(instance).join(&self.application_id).join("checkpoints");
        let tasks = std::fs::read_dir(checkpoints).into_iter().flatten().flatten();
        tasks.map(|task| std::fs::read_dir(task.path()).into_iter().flatten().count()).sum()
    }

    fn spawn(&self, instance: &str) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_eos_join_app"));
        if let Some(state_dir) = &self.state_dir {
            command.env(integration_tests::app::STATE_DIR_ENV, state_dir.path());
        }
        command
            .args([&self.bootstrap, &self.application_id, instance])
            .args(&self.inputs)
            .args([&self.echo, &self.sums, &self.fired])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn eos_join_app")
    }

    /// Verifies the outputs, then checks the instances still running are alive and stop cleanly;
    /// fails with everything that went wrong.
    fn finish(&self, instances: &mut Instances<'_>, sent: &ByKey, started: Instant) {
        let total = sent.values().map(Vec::len).sum();
        let delivered = read_outputs(&self.bootstrap, [&self.echo, &self.sums, &self.fired], total, READ_TIMEOUT);
        let verdict = verify(sent, &delivered);
        instances.check_alive();
        instances.stop_all();
        let mut problems = std::mem::take(&mut instances.problems);
        if let Err(differences) = verdict {
            problems.insert(0, format!("verifier:\n{differences}"));
        }
        println!("{}: done in {:.1?}", self.name, started.elapsed());
        assert!(
            problems.is_empty(),
            "{}: exactly-once violated or instances failed:\n{}",
            self.name,
            problems.join("\n")
        );
    }
}

struct Instance {
    id: String,
    child: Child,
    /// Receives once the app printed `started`: its internal topics exist.
    started: Receiver<()>,
}

/// The running instances, and what went wrong with any of them. Dropping it SIGKILLs the rest,
/// so a failing test leaks no process.
struct Instances<'a> {
    run: &'a Run,
    live: Vec<Instance>,
    problems: Vec<String>,
}

impl<'a> Instances<'a> {
    fn new(run: &'a Run) -> Self {
        Instances { run, live: Vec::new(), problems: Vec::new() }
    }

    fn start(&mut self, id: &str) {
        println!("{}: start {id}", self.run.name);
        let mut child = self.run.spawn(id);
        let stdout = child.stdout.take().expect("piped stdout");
        let (tell, started) = mpsc::channel();
        let prefix = format!("{}: {id}", self.run.name);
        // Drains the app's stdout to the end, so its last line never meets a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("{prefix} {line}");
                if line == "started" {
                    let _ = tell.send(());
                }
            }
        });
        self.live.push(Instance { id: id.to_owned(), child, started });
    }

    /// Starts the group's first instance and waits until it created the internal topics. Others
    /// starting at the same moment race the new changelogs' leader election, which the runtime's
    /// restore does not survive (NotLeaderForPartition is fatal): a different bug from the
    /// co-partitioning these tests are after.
    fn start_first(&mut self, id: &str) {
        self.start(id);
        let first = self.live.last().expect("just started");
        if first.started.recv_timeout(START_TIMEOUT).is_err() {
            self.problems.push(format!("{id} did not start within {START_TIMEOUT:?}"));
        }
    }

    fn kill_9(&mut self, index: usize) {
        let mut instance = self.live.remove(index);
        println!("{}: SIGKILL {}", self.run.name, instance.id);
        instance.child.kill().expect("SIGKILL eos_join_app");
        let _ = instance.child.wait();
    }

    /// Closes the instance's stdin: it commits, leaves the group and must exit 0.
    fn stop(&mut self, index: usize) {
        let instance = self.live.remove(index);
        println!("{}: stop {}", self.run.name, instance.id);
        self.wait_for_exit(close_stdin(instance));
    }

    /// Stops all at once, as a deployment's rolling-off of every instance would.
    fn stop_all(&mut self) {
        println!("{}: stop all", self.run.name);
        let closed: Vec<Instance> = self.live.drain(..).map(close_stdin).collect();
        for instance in closed {
            self.wait_for_exit(instance);
        }
    }

    fn wait_for_exit(&mut self, mut instance: Instance) {
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match instance.child.try_wait().expect("wait for eos_join_app") {
                Some(status) if status.success() => return,
                Some(status) => return self.problems.push(format!("{} did not stop cleanly: {status}", instance.id)),
                None if Instant::now() > deadline => {
                    let _ = instance.child.kill();
                    let _ = instance.child.wait();
                    return self
                        .problems
                        .push(format!("{} did not stop within {STOP_TIMEOUT:?} of its stdin closing", instance.id));
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Records every instance that exited by itself (a fatal runtime error exits 1).
    fn check_alive(&mut self) {
        let mut exited = Vec::new();
        for instance in &mut self.live {
            if let Some(status) = instance.child.try_wait().expect("poll eos_join_app") {
                exited.push(format!("{} exited while it should be running: {status}", instance.id));
            }
        }
        self.problems.extend(exited);
    }
}

fn close_stdin(mut instance: Instance) -> Instance {
    drop(instance.child.stdin.take());
    instance
}

impl Drop for Instances<'_> {
    fn drop(&mut self) {
        for instance in &mut self.live {
            let _ = instance.child.kill();
            let _ = instance.child.wait();
        }
    }
}

/// xorshift64: varied per run, and reproducible from the printed seed with `EOS_SEED=<seed>`.
struct Rng(u64);

impl Rng {
    fn seeded(test: &str) -> Self {
        let seed = std::env::var("EOS_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| {
            SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_nanos() as u64).unwrap_or(1)
        });
        println!("{test}: seed {seed} (rerun with EOS_SEED={seed})");
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn millis_between(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low + 1))
    }
}

fn finish_generating(generator: JoinHandle<ByKey>) -> ByKey {
    generator.join().expect("generator panicked")
}

#[tokio::test(flavor = "multi_thread")]
async fn steady_three_instances_deliver_everything_once() {
    let _exclusive = ONE_SCHEDULE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let run = Run::new("eos-steady").await;
    let mut instances = Instances::new(&run);
    instances.start_first("a");
    for id in ["b", "c"] {
        instances.start(id);
    }
    // Input only once the group settled: otherwise the first instance processes most of it alone.
    std::thread::sleep(SETTLE);
    let sent = finish_generating(run.generate_in_background(20_000, 1, Duration::ZERO));
    run.finish(&mut instances, &sent, started);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_chaos_with_replacements_loses_and_duplicates_nothing() {
    let _exclusive = ONE_SCHEDULE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let mut rng = Rng::seeded("eos-chaos");
    let run = Run::new("eos-chaos").await;
    let generator = run.generate_in_background(40_000, 8, Duration::from_secs(3));
    let mut instances = Instances::new(&run);
    instances.start_first("a");
    for id in ["b", "c"] {
        instances.start(id);
    }
    // Kill one every 3–5 s while input still flows; a replacement joins under a new id, so
    // nothing fences the dead instance's transaction: it must time out.
    for counter in 1..=5 {
        std::thread::sleep(rng.millis_between(3_000, 5_000));
        let victim = rng.below(instances.live.len());
        instances.kill_9(victim);
        instances.start(&format!("chaos-{counter}"));
    }
    let sent = finish_generating(generator);
    run.finish(&mut instances, &sent, started);
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_joining_and_leaving_mid_stream_lose_and_duplicate_nothing() {
    let _exclusive = ONE_SCHEDULE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let mut rng = Rng::seeded("eos-join-leave");
    let run = Run::new("eos-join-leave").await;
    let generator = run.generate_in_background(30_000, 6, Duration::from_millis(2_500));
    let mut instances = Instances::new(&run);
    instances.start_first("first");
    for id in ["second", "third"] {
        std::thread::sleep(Duration::from_secs(3));
        instances.start(id);
    }
    std::thread::sleep(Duration::from_secs(3));
    let leaving = rng.below(instances.live.len());
    instances.stop(leaving);
    std::thread::sleep(Duration::from_secs(3));
    let crashing = rng.below(instances.live.len());
    instances.kill_9(crashing);
    let sent = finish_generating(generator);
    run.finish(&mut instances, &sent, started);
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_every_instance_mid_stream_and_starting_new_ones_loses_and_duplicates_nothing() {
    let _exclusive = ONE_SCHEDULE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let run = Run::new("eos-graceful").await;
    let generator = run.generate_in_background(30_000, 6, Duration::from_millis(2_500));
    let mut instances = Instances::new(&run);
    instances.start_first("old-1");
    for id in ["old-2", "old-3"] {
        instances.start(id);
    }
    let mut progress = CommittedCounter::new(&run.bootstrap, &run.echo);
    if !progress.wait_for(5_000, Duration::from_secs(60)) {
        instances.problems.push(format!("only {} echo records committed before the mid-stream stop", progress.count));
    }
    instances.stop_all();
    for id in ["new-1", "new-2", "new-3"] {
        instances.start(id);
    }
    let sent = finish_generating(generator);
    run.finish(&mut instances, &sent, started);
}

/// Persistent stores, with instances restarted in place: a clean stop leaves checkpoints, so
/// the restart restores only the changelogs' tails; a SIGKILL leaves none, so the restart wipes
/// local state and restores in full. Either way nothing is lost or repeated.
#[tokio::test(flavor = "multi_thread")]
async fn persistent_stores_restarted_in_place_lose_and_duplicate_nothing() {
    let _exclusive = ONE_SCHEDULE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let mut rng = Rng::seeded("eos-persistent");
    let run = Run::with_persistent_stores("eos-persistent").await;
    let generator = run.generate_in_background(30_000, 6, Duration::from_millis(2_500));
    let mut instances = Instances::new(&run);
    instances.start_first("a");
    for id in ["b", "c"] {
        instances.start(id);
    }
    for _ in 0..2 {
        std::thread::sleep(rng.millis_between(2_500, 4_000));
        let leaving = rng.below(instances.live.len());
        let id = instances.live[leaving].id.clone();
        instances.stop(leaving);
        instances.start(&id);
        std::thread::sleep(rng.millis_between(2_500, 4_000));
        let crashing = rng.below(instances.live.len());
        let id = instances.live[crashing].id.clone();
        instances.kill_9(crashing);
        instances.start(&id);
    }
    // The last restart rejoins, is assigned tasks and restores them before the final clean stop:
    // once, the outputs were all read first and that instance held nothing to checkpoint.
    std::thread::sleep(SETTLE * 2);
    let sent = finish_generating(generator);
    run.finish(&mut instances, &sent, started);
    // The group was settled for the final clean stop: every instance held tasks, and closed them.
    for id in ["a", "b", "c"] {
        assert!(run.checkpoints_of(id) > 0, "{id} stopped cleanly at the end and left no checkpoint");
    }
}
