//! Load benchmark, as separate processes on this machine. Phases:
//!
//! - `ice`: ice-config alone, over gRPC and over REST, beside a health check on the same server;
//! - `throughput`: the call path (browsers over WebSocket -> gateway -> signaling -> gateway)
//!   with 4 KB SDPs and 10 candidates per side per call, one signaling in memory;
//! - `replicas`: the same through 2 gateways x 2 signaling replicas on Redis, as a ratio to one
//!   replica in memory and to one in memory behind the same 2 gateways, in `--rounds` rounds
//!   of the three (the median is the figure);
//! - `equal-load`: the three call paths of `throughput` and `replicas` at fixed rates of messages
//!   (`--rates`), below what the slowest delivers: CPU per message at the same load, where the
//!   saturated runs compare each path at its own throughput (and its own batching);
//! - `latency`: call setup and candidate relay at light load;
//! - `sessions`, `sessions-redis`: idle sessions by the hundred thousand over several gateways,
//!   on one signaling in memory / on two replicas on Redis: memory per session of each process;
//! - `storm`: a gateway's browsers all reconnecting and resuming at once after it restarts.
//!
//! Prints figures; asserts nothing. Build the release binaries first:
//!
//!     cargo build --release --workspace --bins && ./target/release/bench [--quick]
//!         [--phases=ice,throughput,replicas,equal-load,latency,sessions,sessions-redis,storm]
//!         [--pairs=200 --seconds=10 --rounds=3 --rates=10000,20000,40000 …]
//!
//! The load generator shares the machine's cores with the servers, so server CPU is measured
//! from /proc (user + system time of the server processes), not inferred from wall time.

mod calls;
mod crowd;
mod ice;
mod procfs;
mod sessions;

use testkit::{
    stack::{Flags, static_config},
    topology::{Store, Topology},
};

/// What to run and how much of it.
struct Options {
    phases: Vec<String>,
    pairs: usize,
    seconds: u64,
    /// Rounds of the `replicas` comparison.
    rounds: usize,
    /// Messages/s in all, for `equal-load`: one run of each call path per rate.
    rates: Vec<u64>,
    light_pairs: usize,
    ice_seconds: u64,
    ice_concurrency: usize,
    /// Idle sessions in all, the gateways they are spread over, and how long they are held.
    sessions: usize,
    gateways: usize,
    hold: u64,
    /// Sessions in the reconnect storm.
    storm: usize,
}

impl Options {
    fn parse() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let quick = args.iter().any(|a| a == "--quick");
        let arg = |name: &str, default: u64, quick_default: u64| -> u64 {
            let flag = format!("--{name}=");
            args.iter()
                .find_map(|a| a.strip_prefix(&flag).and_then(|v| v.parse().ok()))
                .unwrap_or(if quick { quick_default } else { default })
        };
        let phases = args
            .iter()
            .find_map(|a| a.strip_prefix("--phases="))
            .unwrap_or("ice,throughput,replicas,equal-load,latency,sessions,sessions-redis,storm")
            .split(',')
            .map(str::to_owned)
            .collect();
        Self {
            phases,
            pairs: arg("pairs", 200, 50) as usize,
            seconds: arg("seconds", 10, 3),
            rounds: arg("rounds", 3, 1).max(1) as usize,
            rates: args
                .iter()
                .find_map(|a| a.strip_prefix("--rates="))
                .unwrap_or(if quick { "20000" } else { "10000,20000,40000" })
                .split(',')
                .filter_map(|r| r.parse().ok())
                .collect(),
            light_pairs: arg("light-pairs", 100, 20) as usize,
            ice_seconds: arg("ice-seconds", 5, 2),
            ice_concurrency: arg("ice-concurrency", 64, 32) as usize,
            sessions: arg("sessions", 100_000, 4000) as usize,
            gateways: arg("gateways", 6, 2) as usize,
            hold: arg("hold", 60, 5),
            storm: arg("storm", 17_000, 2000) as usize,
        }
    }

    fn runs(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

/// Gateways without the per-browser limits, which the load would trip.
const UNLIMITED: &[&str] = &[
    "--session-rate",
    "1000000",
    "--session-burst",
    "1000000",
    "--session-queue",
    "4096",
];

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("crowd") {
        return crowd::run(&args[2..]).await;
    }
    let options = Options::parse();
    let flags = || Flags {
        gateway: UNLIMITED,
        ..Default::default()
    };
    let single = Topology::start(Store::Memory, &static_config(3478), flags()).await;
    let sdp = calls::sdp(4096);
    let epoch = std::time::Instant::now();

    if options.runs("ice") {
        let pid = single.ice_config.pid().expect("running");
        ice::throughput(&single, pid, options.ice_seconds, options.ice_concurrency).await;
    }

    if options.runs("throughput") {
        println!(
            "== throughput: {} pairs calling back to back for {}s, one signaling in memory",
            options.pairs, options.seconds
        );
        calls::throughput(&single, &options, None, &sdp, epoch, "t").await;
    }

    if options.runs("replicas") {
        // Rounds of the three call paths back to back: the machine's speed drifts (the in-memory
        // run most, its load generator sharing the cores), and within a round the drift falls on
        // all three. The median of the rounds' ratios is the figure.
        let split = Topology::mesh(Store::Memory, 2, 1, &static_config(3478), flags()).await;
        let replicas = Topology::start(Store::Redis, &static_config(3478), flags()).await;
        let (mut to_one, mut to_two) = (Vec::new(), Vec::new());
        for round in 0..options.rounds {
            println!(
                "== replicas, round {} of {}: {} pairs calling back to back for {}s on each call path",
                round + 1,
                options.rounds,
                options.pairs,
                options.seconds
            );
            // Each round its own names: the last round's are still held for their grace period.
            let prefix = |path: char| format!("{path}{round}-");
            println!("-- one signaling in memory");
            let alone = calls::throughput(&single, &options, None, &sdp, epoch, &prefix('m')).await;
            // The same shape in memory: what the store and the second replica cost, apart from
            // what splitting each call over two gateways costs.
            println!(
                "-- 2 gateways x 1 signaling in memory (caller and callee on different gateways)"
            );
            let two_gateways =
                calls::throughput(&split, &options, None, &sdp, epoch, &prefix('g')).await;
            println!(
                "-- 2 gateways x 2 signaling replicas on Redis (caller and callee on different gateways and replicas)"
            );
            let shared =
                calls::throughput(&replicas, &options, None, &sdp, epoch, &prefix('r')).await;
            for (label, baseline, ratios) in [
                ("one replica in memory", &alone, &mut to_one),
                (
                    "one replica in memory, same 2 gateways",
                    &two_gateways,
                    &mut to_two,
                ),
            ] {
                let ratio = shared.cpu_per_message / baseline.cpu_per_message;
                println!(
                    "ratio to {label}: {ratio:.2}x the CPU per delivered message, {:.2}x the messages/s",
                    shared.per_second / baseline.per_second
                );
                ratios.push(ratio);
            }
        }
        println!(
            "== replicas: median over {} rounds: {:.2}x the CPU per delivered message of one replica in memory, {:.2}x of one in memory behind the same 2 gateways",
            options.rounds,
            median(&mut to_one),
            median(&mut to_two)
        );
    }

    if options.runs("equal-load") {
        let split = Topology::mesh(Store::Memory, 2, 1, &static_config(3478), flags()).await;
        let replicas = Topology::start(Store::Redis, &static_config(3478), flags()).await;
        for (round, &rate) in options.rates.iter().enumerate() {
            let rate = rate as f64;
            println!(
                "== equal load: {} pairs, {rate:.0} messages/s in all, on each call path",
                options.pairs
            );
            // Each round its own names: the last round's are still held for their grace period.
            let prefix = |path: char| format!("{path}{round}-");
            println!("-- one signaling in memory");
            let alone =
                calls::throughput(&single, &options, Some(rate), &sdp, epoch, &prefix('e')).await;
            println!("-- 2 gateways x 1 signaling in memory");
            let two_gateways =
                calls::throughput(&split, &options, Some(rate), &sdp, epoch, &prefix('f')).await;
            println!("-- 2 gateways x 2 signaling replicas on Redis");
            let shared =
                calls::throughput(&replicas, &options, Some(rate), &sdp, epoch, &prefix('h')).await;
            for (label, baseline) in [
                ("one replica in memory", &alone),
                ("one replica in memory, same 2 gateways", &two_gateways),
            ] {
                println!(
                    "ratio at {rate:.0} msg/s to {label}: {:.2}x the CPU per delivered message",
                    shared.cpu_per_message / baseline.cpu_per_message
                );
            }
        }
    }

    if options.runs("latency") {
        calls::latency(&single, &options, &sdp, epoch).await;
    }

    if options.runs("sessions") || options.runs("sessions-redis") {
        drop(single);
    }
    if options.runs("sessions") {
        sessions::many(&options, Store::Memory).await;
    }
    if options.runs("sessions-redis") {
        sessions::many(&options, Store::Redis).await;
    }

    if options.runs("storm") {
        sessions::storm(&options).await;
    }
}

/// The median of `values` (the lower middle one of an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(f64::NAN)
}
