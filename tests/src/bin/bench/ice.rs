//! ice-config alone: what an ICE configuration costs beside a health check on the same server.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use stunner_proto::iceconfig::v1::{GetIceConfigRequest, ice_config_service_client};
use testkit::topology::Topology;

use crate::procfs::cpu_ticks;

/// Requests per second ice-config answers, `concurrency` requests in flight, over gRPC (spread
/// over 4 HTTP/2 connections) and over REST (HTTP/1.1 keep-alive); each beside the cheapest
/// request the same server answers on the same API (gRPC health `Check`, `/healthz`), as a ratio
/// of ice-config's CPU per request: what an ICE configuration costs above a health check.
pub async fn throughput(stack: &Topology, pid: u32, seconds: u64, concurrency: usize) {
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
