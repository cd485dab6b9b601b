//! Command-line flags, each also read from an environment variable.

use clap::Parser;
use svc_common::{
    Duration,
    args::{GrpcArgs, HttpArgs, ServiceArgs},
    parse_duration,
};

use crate::{
    app::{self, Settings},
    directory::StoreUrl,
    vocabulary::Limits,
};

/// Presence and call routing for browser sessions carried by the gateway.
#[derive(Debug, Parser)]
#[command(
    name = "signaling",
    version,
    mut_arg("grpc_addr", |a| a.default_value("0.0.0.0:50052").required(false)),
    mut_arg("http_addr", |a| a.default_value("0.0.0.0:8089").required(false)),
)]
pub struct Args {
    #[command(flatten)]
    pub grpc: GrpcArgs,

    #[command(flatten)]
    pub http: HttpArgs,

    /// How long a call may ring unanswered.
    #[arg(long, env = "RING_TIMEOUT", default_value_t = Limits::default().ring_timeout.into(), value_parser = parse_duration)]
    pub ring_timeout: Duration,

    /// How long a disconnected user's name stays reserved for its resume token.
    #[arg(long, env = "RESUME_GRACE", default_value_t = Limits::default().resume_grace.into(), value_parser = parse_duration)]
    pub resume_grace: Duration,

    /// The store several replicas share: `redis://[:password@]host:6379[/db]`,
    /// `redis+sentinel://[:password@]host:26379[,host:26379]/<master>[/db]` or
    /// `redis+cluster://[:password@]host:6379[,host:6379]`. Without it, names and calls live
    /// in this process (one replica).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<StoreUrl>,

    /// Candidates buffered per call until the callee can take them.
    #[arg(long, env = "MAX_BUFFERED_CANDIDATES", default_value_t = Limits::default().max_buffered_candidates)]
    pub max_buffered_candidates: usize,

    /// Threads running the replica's tasks; 0 for one per CPU. On one thread (the default) its
    /// many short tasks never wake each other across threads, which costs about a quarter less
    /// CPU per message: for more capacity, add replicas (`--redis-url`) rather than threads.
    #[arg(long, env = "WORKER_THREADS", default_value_t = 1)]
    pub worker_threads: usize,

    #[command(flatten)]
    pub service: ServiceArgs,
}

impl Args {
    /// Parses the flags and runs the service on the runtime they ask for.
    pub fn parse_and_run() -> anyhow::Result<()> {
        let args = Self::parse();
        let runtime = args.runtime()?;
        runtime.block_on(svc_common::run_binary(
            "signaling",
            app::build(args.settings()),
        ))
    }

    /// The async runtime: tasks on this thread alone, or spread over `worker_threads` threads.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.worker_threads {
            1 => tokio::runtime::Builder::new_current_thread(),
            threads => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                if threads > 1 {
                    builder.worker_threads(threads);
                }
                builder
            }
        };
        builder.enable_all().build()
    }

    pub fn settings(self) -> Settings {
        Settings {
            grpc_addr: self.grpc.grpc_addr,
            http_addr: self.http.http_addr,
            limits: Limits {
                ring_timeout: *self.ring_timeout,
                resume_grace: *self.resume_grace,
                max_buffered_candidates: self.max_buffered_candidates,
                ..Limits::default()
            },
            redis: self.redis_url,
            runtime: self.service.runtime(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let settings = Args::parse_from(["signaling"]).settings();
        assert_eq!(settings.grpc_addr.port(), 50052);
        assert_eq!(settings.http_addr.port(), 8089);
        assert_eq!(
            settings.limits.ring_timeout,
            std::time::Duration::from_secs(30)
        );
        assert_eq!(
            settings.limits.resume_grace,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(settings.limits.max_buffered_candidates, 64);
    }

    #[test]
    fn one_thread_by_default_or_as_many_as_asked() {
        use tokio::runtime::RuntimeFlavor;
        let runtime = |flags: &[&str]| {
            let args = Args::parse_from(std::iter::once("signaling").chain(flags.iter().copied()));
            args.runtime().expect("a runtime")
        };
        let default = runtime(&[]);
        assert_eq!(
            default.handle().runtime_flavor(),
            RuntimeFlavor::CurrentThread
        );
        let three = runtime(&["--worker-threads", "3"]);
        assert_eq!(three.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(three.metrics().num_workers(), 3);
        let per_cpu = runtime(&["--worker-threads", "0"]);
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(per_cpu.metrics().num_workers(), cpus);
    }
}
