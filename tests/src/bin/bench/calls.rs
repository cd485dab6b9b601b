//! The call path under load: pairs calling back to back (throughput, CPU per delivered
//! message) and at light load (latency).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use testkit::{Browser, topology::Topology};

use crate::{Options, procfs::cpu_ticks};

const CANDIDATES: usize = 10;
/// Messages delivered to the browsers per call (see `one_call`).
const MESSAGES_PER_CALL: u64 = 24;

/// What a throughput run measured.
pub struct Throughput {
    pub per_second: f64,
    pub cpu_per_message: f64,
}

/// Pairs calling back to back, or at `rate` messages/s in all; CPU of every process on the call
/// path (store included).
pub async fn throughput(
    topology: &Topology,
    options: &Options,
    rate: Option<f64>,
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
    // At a rate: each pair calls once every `pace`, the pairs spread over it.
    let pairs = pair_set.len().max(1);
    let pace = rate.map(|rate| {
        Duration::from_secs_f64(pairs as f64 * MESSAGES_PER_CALL as f64 / rate.max(1.0))
    });
    for (n, (mut caller, mut callee, name)) in pair_set.into_iter().enumerate() {
        let (delivered, stop, sdp) = (delivered.clone(), stop.clone(), sdp.to_owned());
        let mut tick = pace.map(|every| {
            let start = tokio::time::Instant::now() + every.mul_f64(n as f64 / pairs as f64);
            let mut tick = tokio::time::interval_at(start, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        tasks.spawn(async move {
            let mut samples = Samples::default();
            while !stop.load(Ordering::Relaxed) {
                if let Some(tick) = &mut tick {
                    tick.tick().await;
                }
                one_call(&mut caller, &mut callee, &name, &sdp, epoch, &mut samples).await;
                delivered.fetch_add(MESSAGES_PER_CALL, Ordering::Relaxed);
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
pub async fn latency(topology: &Topology, options: &Options, sdp: &str, epoch: Instant) {
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

pub fn sdp(bytes: usize) -> String {
    let mut sdp = String::from("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    while sdp.len() < bytes {
        sdp.push_str("a=candidate-padding:0123456789abcdef0123456789abcdef0123456789abcdef\r\n");
    }
    sdp.truncate(bytes);
    sdp
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
