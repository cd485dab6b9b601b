//! Load benchmark of the call path: browsers over WebSocket → gateway → signaling → gateway,
//! as separate processes, with 4 KB SDPs and 10 candidates per side per call, with one
//! signaling in memory and with two replicas on Redis (same run, as a ratio); of ice-config
//! alone, over gRPC and over REST; light-load latency; memory per idle session. Prints figures;
//! asserts nothing. Build the release binaries first:
//!
//!     cargo build --release --workspace --bins && ./target/release/bench [--quick]
//!         [--phases=ice,throughput,replicas,latency,memory] [--pairs=200 --seconds=10 …]
//!
//! The load generator shares the machine's cores with the servers, so server CPU is measured
//! from /proc (user + system time of the three processes), not inferred from wall time.
//! (Over 300 lines: one binary, its phases side by side so their figures read alike.)

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use stunner_proto::iceconfig::v1::{GetIceConfigRequest, ice_config_service_client};

use serde_json::{Value, json};
use testkit::{
    Browser,
    stack::{Flags, static_config},
    topology::{Store, Topology},
};

const CANDIDATES: usize = 10;

/// What to run and how much of it.
struct Options {
    phases: Vec<String>,
    pairs: usize,
    seconds: u64,
    light_pairs: usize,
    idle: usize,
    ice_seconds: u64,
    ice_concurrency: usize,
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
            .unwrap_or("ice,throughput,replicas,latency,memory")
            .split(',')
            .map(str::to_owned)
            .collect();
        Self {
            phases,
            pairs: arg("pairs", 200, 50) as usize,
            seconds: arg("seconds", 10, 3),
            light_pairs: arg("light-pairs", 100, 20) as usize,
            idle: arg("idle", 5000, 1000) as usize,
            ice_seconds: arg("ice-seconds", 5, 2),
            ice_concurrency: arg("ice-concurrency", 64, 32) as usize,
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
    let options = Options::parse();
    let flags = || Flags {
        gateway: UNLIMITED,
        ..Default::default()
    };
    let single = Topology::start(Store::Memory, &static_config(3478), flags()).await;
    let sdp = sdp(4096);
    let epoch = Instant::now();

    if options.runs("ice") {
        let pid = single.ice_config.pid().expect("running");
        ice_config_throughput(&single, pid, options.ice_seconds, options.ice_concurrency).await;
    }

    let mut in_memory = None;
    if options.runs("throughput") {
        println!(
            "== throughput: {} pairs calling back to back for {}s, one signaling in memory",
            options.pairs, options.seconds
        );
        in_memory = Some(throughput(&single, &options, &sdp, epoch, "t").await);
    }

    if options.runs("replicas") {
        println!(
            "== throughput: {} pairs, 2 gateways x 2 signaling replicas on Redis (caller and callee on different gateways and replicas)",
            options.pairs
        );
        let replicas = Topology::start(Store::Redis, &static_config(3478), flags()).await;
        let shared = throughput(&replicas, &options, &sdp, epoch, "r").await;
        if let Some(in_memory) = &in_memory {
            println!(
                "ratio to one replica in memory: {:.2}x the CPU per delivered message, {:.2}x the messages/s",
                shared.cpu_per_message / in_memory.cpu_per_message,
                shared.per_second / in_memory.per_second
            );
        }
    }

    if options.runs("latency") {
        latency(&single, &options, &sdp, epoch).await;
    }

    if options.runs("memory") {
        println!("== memory: {} idle registered sessions", options.idle);
        let pids = single.call_path_pids();
        let rss_before = rss_kib(&pids);
        let mut sessions = Vec::with_capacity(options.idle);
        for n in 0..options.idle {
            let mut browser = single.browser().await;
            browser.register_ok(&format!("idle{n}")).await;
            sessions.push(browser);
        }
        let rss_after = rss_kib(&pids);
        println!(
            "gateway + signaling RSS:   {rss_before} KiB -> {rss_after} KiB = {:.1} KiB per idle session",
            (rss_after - rss_before) as f64 / options.idle as f64
        );
    }
}

/// What a throughput run measured.
struct Throughput {
    per_second: f64,
    cpu_per_message: f64,
}

/// Pairs calling back to back; CPU of every process on the call path (store included).
async fn throughput(
    topology: &Topology,
    options: &Options,
    sdp: &str,
    epoch: Instant,
    prefix: &str,
) -> Throughput {
    let servers = topology.call_path_pids();
    let pair_set = connect_pairs(topology, options.pairs, prefix).await;
    let cpu_before = cpu_ticks(&servers);
    let each_before: Vec<u64> = servers.iter().map(|p| cpu_ticks(&[*p])).collect();
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (mut caller, mut callee, name) in pair_set {
        let (delivered, stop, sdp) = (delivered.clone(), stop.clone(), sdp.to_owned());
        tasks.spawn(async move {
            let mut samples = Samples::default();
            while !stop.load(Ordering::Relaxed) {
                one_call(&mut caller, &mut callee, &name, &sdp, epoch, &mut samples).await;
                delivered.fetch_add(24, Ordering::Relaxed);
            }
            samples
        });
    }
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Samples::default();
    while let Some(done) = tasks.join_next().await {
        samples.merge(done.expect("pair task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_ticks(&servers) - cpu_before;
    let delivered = delivered.load(Ordering::Relaxed);
    let cpu_us = cpu as f64 * 10_000.0; // 100 ticks a second
    let each: Vec<String> = servers
        .iter()
        .zip(&each_before)
        .map(|(pid, before)| {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let us = (cpu_ticks(&[*pid]) - before) as f64 * 10_000.0 / delivered.max(1) as f64;
            format!("{} {us:.1}", name.trim())
        })
        .collect();
    let result = Throughput {
        per_second: delivered as f64 / elapsed,
        cpu_per_message: cpu_us / delivered as f64,
    };
    println!(
        "delivered messages:        {delivered} in {elapsed:.1}s = {:.0} msg/s",
        result.per_second
    );
    println!(
        "server CPU ({} processes): {:.2} s = {:.1} us per delivered message",
        servers.len(),
        cpu_us / 1e6,
        result.cpu_per_message
    );
    println!("  of which (us per message): {}", each.join(", "));
    println!(
        "call setup under load:     p50 {} p99 {}",
        samples.setup.p(50.0),
        samples.setup.p(99.0)
    );
    result
}

/// Light load: one call per second per pair, spread over the second.
async fn latency(topology: &Topology, options: &Options, sdp: &str, epoch: Instant) {
    let (light_pairs, seconds) = (options.light_pairs, options.seconds);
    println!("== latency: {light_pairs} pairs, one call per second each, {seconds}s");
    let pair_set = connect_pairs(topology, light_pairs, "l").await;
    let mut tasks = tokio::task::JoinSet::new();
    let spread = Duration::from_secs(1) / u32::try_from(light_pairs.max(1)).unwrap_or(1);
    for (n, (mut caller, mut callee, name)) in pair_set.into_iter().enumerate() {
        let sdp = sdp.to_owned();
        // Spread the pairs over the second, so the load is light rather than one burst.
        let start = tokio::time::Instant::now() + spread * u32::try_from(n).unwrap_or(0);
        tasks.spawn(async move {
            let mut samples = Samples::default();
            let mut tick = tokio::time::interval_at(start, Duration::from_secs(1));
            for _ in 0..seconds {
                tick.tick().await;
                one_call(&mut caller, &mut callee, &name, &sdp, epoch, &mut samples).await;
            }
            samples
        });
    }
    let mut samples = Samples::default();
    while let Some(done) = tasks.join_next().await {
        samples.merge(done.expect("pair task"));
    }
    println!(
        "call setup (call -> callResponse): p50 {} p99 {}",
        samples.setup.p(50.0),
        samples.setup.p(99.0)
    );
    println!(
        "candidate relay:                   p50 {} p99 {}",
        samples.candidate.p(50.0),
        samples.candidate.p(99.0)
    );
}

/// One whole call: offer, answer, 10 candidates each way, hang-up. 24 messages delivered.
async fn one_call(
    caller: &mut Browser,
    callee: &mut Browser,
    name: &str,
    sdp: &str,
    epoch: Instant,
    samples: &mut Samples,
) {
    let sent = Instant::now();
    caller
        .send(json!({"id": "call", "to": format!("{name}-b"), "sdpOffer": sdp}))
        .await;
    expect(callee, "incomingCall").await;
    callee
        .send(json!({"id": "incomingCallResponse", "from": format!("{name}-a"), "callResponse": "accept", "sdpAnswer": sdp}))
        .await;
    expect(caller, "callResponse").await;
    samples.setup.push(sent.elapsed());
    expect(callee, "startCommunication").await;
    for side in [&mut *caller, &mut *callee] {
        for n in 0..CANDIDATES {
            let stamp = epoch.elapsed().as_nanos();
            let candidate = format!(
                "candidate:{n} 1 udp 2122260223 10.0.0.1 {} typ relay raddr 0.0.0.0 rport 0 ts {stamp}",
                40000 + n
            );
            side.send(json!({"id": "onIceCandidate", "candidate": {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0}}))
                .await;
        }
    }
    for side in [&mut *callee, &mut *caller] {
        for _ in 0..CANDIDATES {
            let message = expect(side, "iceCandidate").await;
            let stamp: u128 = message["candidate"]["candidate"]
                .as_str()
                .and_then(|c| c.rsplit(' ').next())
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let now = epoch.elapsed().as_nanos();
            samples.candidate.push(Duration::from_nanos(
                u64::try_from(now.saturating_sub(stamp)).unwrap_or(0),
            ));
        }
    }
    caller.send(json!({"id": "stop"})).await;
    expect(callee, "stopCommunication").await;
}

async fn expect(browser: &mut Browser, id: &str) -> Value {
    let message = browser.recv().await;
    assert_eq!(message["id"], id, "{message}");
    message
}

/// Requests per second ice-config answers, `concurrency` requests in flight, over gRPC (spread
/// over 4 HTTP/2 connections) and over REST (HTTP/1.1 keep-alive); each beside the cheapest
/// request the same server answers on the same API (gRPC health `Check`, `/healthz`), as a ratio
/// of ice-config's CPU per request: what an ICE configuration costs above a health check.
async fn ice_config_throughput(stack: &Topology, pid: u32, seconds: u64, concurrency: usize) {
    println!("== ice-config: {concurrency} requests in flight for {seconds}s each");
    let mut channels = Vec::new();
    for _ in 0..4 {
        let channel = tonic::transport::Endpoint::from_shared(stack.ice_config.url("grpc", ""))
            .expect("uri")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect to ice-config");
        channels.push(channel);
    }
    let rest = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let ice_url = stack.ice_config.url(
        "http",
        "/ice?service=turn&username=bench&iceTransportPolicy=relay",
    );
    let health_url = stack.ice_config.url("http", "/healthz");
    let mut cost = std::collections::HashMap::new();
    for call in [Call::Health, Call::Ice, Call::Healthz, Call::Rest] {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let cpu_before = cpu_ticks(&[pid]);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..concurrency {
            let (done, stop) = (done.clone(), stop.clone());
            let channel = channels[n % channels.len()].clone();
            let (rest, url) = (
                rest.clone(),
                if call == Call::Rest {
                    ice_url.clone()
                } else {
                    health_url.clone()
                },
            );
            tasks.spawn(async move {
                let mut grpc =
                    ice_config_service_client::IceConfigServiceClient::new(channel.clone());
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                while !stop.load(Ordering::Relaxed) {
                    let ok = match call {
                        Call::Ice => {
                            let request = GetIceConfigRequest {
                                user_id: format!("user{n}"),
                                ..Default::default()
                            };
                            grpc.get_ice_config(request).await.is_ok()
                        }
                        Call::Health => health
                            .check(tonic_health::pb::HealthCheckRequest::default())
                            .await
                            .is_ok(),
                        Call::Rest | Call::Healthz => match rest.get(&url).send().await {
                            Ok(response) if response.status().is_success() => {
                                response.bytes().await.is_ok()
                            }
                            _ => false,
                        },
                    };
                    assert!(ok, "ice-config failed a {call:?} request");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        while let Some(ended) = tasks.join_next().await {
            ended.expect("request loop");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let done = done.load(Ordering::Relaxed);
        let cpu_us = (cpu_ticks(&[pid]) - cpu_before) as f64 * 10_000.0 / done as f64;
        cost.insert(call, cpu_us);
        println!(
            "{:<28} {done} requests in {elapsed:.1}s = {:.0} req/s, ice-config CPU {cpu_us:.1} us per request",
            call.name(),
            done as f64 / elapsed,
        );
    }
    println!(
        "ratio gRPC GetIceConfig / health Check CPU: {:.2} (goal <= 1.3)",
        cost[&Call::Ice] / cost[&Call::Health]
    );
    println!(
        "ratio REST /ice / /healthz CPU: {:.2} (goal <= 1.3)",
        cost[&Call::Rest] / cost[&Call::Healthz]
    );
}

/// What the ice-config phase asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Call {
    Health,
    Ice,
    Healthz,
    Rest,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Health => "gRPC grpc.health.v1 Check",
            Call::Ice => "gRPC GetIceConfig",
            Call::Healthz => "REST /healthz",
            Call::Rest => "REST /ice",
        }
    }
}

async fn connect_pairs(
    stack: &Topology,
    pairs: usize,
    prefix: &str,
) -> Vec<(Browser, Browser, String)> {
    let mut out = Vec::with_capacity(pairs);
    for n in 0..pairs {
        let name = format!("{prefix}{n}");
        let mut caller = stack.browser().await;
        caller.register_ok(&format!("{name}-a")).await;
        let mut callee = stack.browser().await;
        callee.register_ok(&format!("{name}-b")).await;
        out.push((caller, callee, name));
    }
    out
}

fn sdp(bytes: usize) -> String {
    let mut sdp = String::from("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    while sdp.len() < bytes {
        sdp.push_str("a=candidate-padding:0123456789abcdef0123456789abcdef0123456789abcdef\r\n");
    }
    sdp.truncate(bytes);
    sdp
}

/// user + system clock ticks of the processes.
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // Fields after the command name (which may contain spaces) start after ") ".
            let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
            fields
                .get(11)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                + fields
                    .get(12)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
        })
        .sum()
}

fn rss_kib(pids: &[u32]) -> i64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .sum()
}

#[derive(Default)]
struct Samples {
    setup: Latencies,
    candidate: Latencies,
}

impl Samples {
    fn merge(&mut self, other: Samples) {
        self.setup.0.extend(other.setup.0);
        self.candidate.0.extend(other.candidate.0);
    }
}

#[derive(Default)]
struct Latencies(Vec<Duration>);

impl Latencies {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    fn p(&mut self, percentile: f64) -> String {
        if self.0.is_empty() {
            return "-".into();
        }
        self.0.sort_unstable();
        let index = ((percentile / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        format!("{:.2} ms", self.0[index].as_secs_f64() * 1000.0)
    }
}
