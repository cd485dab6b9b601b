//! Idle sessions by the hundred thousand, and a reconnect storm: what holding browsers costs each
//! process, and how soon a restarted gateway's browsers are all registered again. The browsers
//! are [`crowd`](crate::crowd)s, each a process of its own.

use std::{
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use testkit::{
    Service,
    stack::{Flags, static_config, ws_url},
    topology::{Store, Topology},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::{Options, procfs};

/// Sessions per crowd process in the storm (below the 20,000 descriptors a process may hold).
const STORM_CROWD: usize = 9000;

/// A crowd process, and its order and answer lines.
struct Crowd {
    _child: Child,
    orders: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
}

impl Crowd {
    async fn start(gateway: &Service, sessions: usize, prefix: &str, net: u8) -> Crowd {
        let exe = std::env::current_exe().expect("the bench's own path");
        let mut child = Command::new(exe)
            .args([
                "crowd".to_owned(),
                ws_url(gateway),
                sessions.to_string(),
                prefix.to_owned(),
                net.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start a crowd");
        Crowd {
            orders: child.stdin.take().expect("piped stdin"),
            answers: BufReader::new(child.stdout.take().expect("piped stdout")).lines(),
            _child: child,
        }
    }

    async fn order(&mut self, order: &str) {
        self.orders
            .write_all(format!("{order}\n").as_bytes())
            .await
            .expect("a crowd takes orders");
        self.orders.flush().await.expect("a crowd takes orders");
    }

    /// The figures of the next answer starting with `word`.
    async fn answer(&mut self, word: &str) -> Vec<f64> {
        while let Some(line) = self.answers.next_line().await.expect("a crowd's answer") {
            if let Some(figures) = line.strip_prefix(word) {
                return figures
                    .split_whitespace()
                    .map(|f| f.parse().expect("a figure"))
                    .collect();
            }
        }
        panic!("a crowd ended before answering {word}");
    }
}

/// Gives every crowd `order` (if any) at once, and sums their answers figure by figure (the
/// last figure, a time, is the slowest one's).
async fn all(crowds: &mut [Crowd], order: Option<&str>, word: &str) -> Vec<f64> {
    if let Some(order) = order {
        for crowd in crowds.iter_mut() {
            crowd.order(order).await;
        }
    }
    let answers = join_all(crowds.iter_mut().map(|c| c.answer(word))).await;
    let mut total: Vec<f64> = Vec::new();
    for answer in answers {
        total.resize(answer.len(), 0.0);
        for (sum, figure) in total.iter_mut().zip(&answer) {
            *sum += figure;
        }
        if let (Some(last), Some(figure)) = (total.last_mut(), answer.last()) {
            *last = last.max(*figure);
        }
    }
    total
}

/// Gateways that hold whole crowds: no per-browser limits, and warnings only in the logs (the
/// bench keeps every line the servers print).
fn flags() -> Flags<'static> {
    Flags {
        env: &[("RUST_LOG", "warn")],
        gateway: crate::UNLIMITED,
        ..Default::default()
    }
}

/// Resident memory of each process of a topology.
struct Memory {
    gateways: Vec<i64>,
    signaling: Vec<i64>,
    redis: Option<i64>,
}

impl Memory {
    fn of(t: &Topology) -> Memory {
        let rss = |s: &Service| s.pid().map_or(0, |pid| procfs::rss_kib(&[pid]));
        Memory {
            gateways: t.gateways.iter().map(rss).collect(),
            signaling: t.signaling.iter().map(rss).collect(),
            redis: t
                .redis
                .as_ref()
                .and_then(|r| r.pid())
                .map(|pid| procfs::rss_kib(&[pid])),
        }
    }
}

/// `options.sessions` idle sessions spread over `options.gateways` gateways, all attached to
/// one signaling in memory, or to two replicas on Redis: registered, held, pinged; resident
/// memory per session of each process.
pub async fn many(options: &Options, store: Store) {
    let gateways = options.gateways;
    let replicas = if store == Store::Memory { 1 } else { 2 };
    let per_gateway = options.sessions / gateways;
    let sessions = per_gateway * gateways;
    println!(
        "== sessions: {sessions} idle sessions, {per_gateway} on each of {gateways} gateways, {replicas} signaling ({store:?}), held {}s",
        options.hold
    );
    let t = Topology::mesh(store, gateways, replicas, &static_config(3478), flags()).await;
    let start = Memory::of(&t);
    let began = Instant::now();
    let mut crowds = Vec::new();
    for (n, gateway) in t.gateways.iter().enumerate() {
        let net = u8::try_from(n + 1).expect("fewer than 255 gateways");
        crowds.push(Crowd::start(gateway, per_gateway, &format!("g{n}-"), net).await);
    }
    let joined = all(&mut crowds, None, "registered").await;
    let took = began.elapsed().as_secs_f64();
    println!(
        "registered:  {:.0} in {took:.1}s = {:.0}/s; {:.0} refused; {:.0} connection attempts retried",
        joined[0],
        joined[0] / took,
        joined[1],
        joined[2]
    );
    let registered = Memory::of(&t);
    tokio::time::sleep(Duration::from_secs(options.hold)).await;
    let alive = all(&mut crowds, Some("ping"), "alive").await;
    println!(
        "after {}s:  {:.0} sessions answered a ping, {:.0} lost",
        options.hold, alive[0], alive[1]
    );
    let held = Memory::of(&t);
    report_memory(&start, &registered, &held, sessions);
}

/// One process's resident memory at start, once registered and after the hold, in KiB.
type Readings = [i64; 3];

/// The readings of each process of one kind, from the three snapshots.
fn readings<'a>(
    start: &'a [i64],
    registered: &'a [i64],
    held: &'a [i64],
) -> impl Iterator<Item = Readings> + 'a {
    start
        .iter()
        .zip(registered)
        .zip(held)
        .map(|((a, b), c)| [*a, *b, *c])
}

fn mb([a, b, c]: Readings) -> String {
    let mb = |kib: i64| kib as f64 / 1024.0;
    format!("{:.1} -> {:.1} -> {:.1} MB", mb(a), mb(b), mb(c))
}

fn report_memory(start: &Memory, registered: &Memory, held: &Memory, sessions: usize) {
    let per_session =
        |before: i64, after: i64, of: usize| (after - before) as f64 / of.max(1) as f64;
    let per_gateway = sessions / start.gateways.len().max(1);
    println!("resident memory, MB at start -> registered -> held; KiB per session held");
    let mut gateway_total = 0.0;
    for (n, r) in readings(&start.gateways, &registered.gateways, &held.gateways).enumerate() {
        gateway_total += (r[2] - r[0]) as f64;
        println!(
            "  gateway {n}:   {}; {:.2} KiB per session (registered: {:.2})",
            mb(r),
            per_session(r[0], r[2], per_gateway),
            per_session(r[0], r[1], per_gateway)
        );
    }
    let mut signaling_total = 0.0;
    for (n, r) in readings(&start.signaling, &registered.signaling, &held.signaling).enumerate() {
        signaling_total += (r[2] - r[0]) as f64;
        println!("  signaling {n}: {}", mb(r));
    }
    if let (Some(a), Some(b), Some(c)) = (start.redis, registered.redis, held.redis) {
        println!(
            "  redis:       {}; {:.2} KiB per session",
            mb([a, b, c]),
            per_session(a, c, sessions)
        );
    }
    let gateway = gateway_total / sessions.max(1) as f64;
    let signaling = signaling_total / sessions.max(1) as f64;
    println!(
        "per session: gateway {gateway:.2} KiB + signaling {signaling:.2} KiB = {:.2} KiB (goal <= 6; signaling goal <= 1)",
        gateway + signaling
    );
}

/// `options.storm` sessions on one gateway, which is killed and started again on its port;
/// every browser reconnects at once and resumes its name.
pub async fn storm(options: &Options) {
    let sessions = options.storm;
    println!(
        "== reconnect storm: {sessions} sessions on one gateway; it is killed and started again, and every browser reconnects and resumes at once"
    );
    let mut t = Topology::start(Store::Memory, &static_config(3478), flags()).await;
    let mut crowds = Vec::new();
    let count = sessions.div_ceil(STORM_CROWD);
    for n in 0..count {
        let share = sessions / count + usize::from(n < sessions % count);
        let net = u8::try_from(101 + n).expect("fewer than 150 crowds");
        crowds.push(Crowd::start(&t.gateways[0], share, &format!("s{n}-"), net).await);
    }
    let joined = all(&mut crowds, None, "registered").await;
    println!(
        "registered:  {:.0} in {:.1}s; {:.0} refused",
        joined[0], joined[3], joined[1]
    );

    t.gateways[0].kill().await;
    all(&mut crowds, Some("closed"), "closed").await;
    t.restart_gateway(0).await;
    let gateway = t.gateways[0].pid().expect("running");
    let sampler = Sampler::start(&t);
    let resumed = all(&mut crowds, Some("resume"), "resumed").await;
    let samples = sampler.stop().await;
    println!(
        "storm:       {:.0} resumed in {:.2}s (until the last one registered); {:.0} refused; {:.0} connection attempts retried",
        resumed[0], resumed[3], resumed[1], resumed[2]
    );
    println!(
        "peak memory: gateway {:.1} MB (VmHWM), signaling {:.1} MB (sampled every 100 ms)",
        procfs::peak_rss_kib(gateway) as f64 / 1024.0,
        samples.signaling_peak_kib as f64 / 1024.0
    );
    println!(
        "ice-config:  {:.0} configurations issued; peak {:.0}/s over 1 s, {:.0}/s on average over the storm",
        samples.total(),
        samples.peak_rate(),
        samples.total() / resumed[3].max(0.001)
    );
}

/// Samples taken through a storm: signaling's memory, and ice-config's configurations issued.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Samples>,
}

#[derive(Default)]
struct Samples {
    signaling_peak_kib: i64,
    issued: Vec<(Instant, f64)>,
}

impl Sampler {
    fn start(t: &Topology) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let signaling: Vec<u32> = t.signaling.iter().filter_map(Service::pid).collect();
        let metrics = t.ice_config.url("http", "/metrics");
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut samples = Samples::default();
                let client = reqwest::Client::new();
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    samples.signaling_peak_kib =
                        samples.signaling_peak_kib.max(procfs::rss_kib(&signaling));
                    if let Ok(response) = client.get(&metrics).send().await
                        && let Ok(body) = response.text().await
                    {
                        samples.issued.push((Instant::now(), issued(&body)));
                    }
                }
                samples
            }
        });
        Sampler { stop, task }
    }

    async fn stop(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the sampler")
    }
}

/// ICE configurations ice-config has issued, over every API.
fn issued(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("iceconfig_ice_configs_issued_total"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

impl Samples {
    /// The highest rate over any window of at least a second (over the whole storm when it
    /// was shorter).
    fn peak_rate(&self) -> f64 {
        let whole = match (self.issued.first(), self.issued.last()) {
            (Some((a, from)), Some((b, to))) if b > a => {
                (to - from) / b.duration_since(*a).as_secs_f64()
            }
            _ => 0.0,
        };
        let mut peak: f64 = 0.0;
        for (i, (start, from)) in self.issued.iter().enumerate() {
            if let Some((end, to)) = self.issued[i..]
                .iter()
                .find(|(end, _)| end.duration_since(*start) >= Duration::from_secs(1))
            {
                peak = peak.max((to - from) / end.duration_since(*start).as_secs_f64());
            }
        }
        if peak > 0.0 { peak } else { whole }
    }

    /// Issued from the first sample to the last.
    fn total(&self) -> f64 {
        match (self.issued.first(), self.issued.last()) {
            (Some((_, first)), Some((_, last))) => last - first,
            _ => 0.0,
        }
    }
}
