//! The Prometheus text exposition every service's `/metrics` serves: the service's own metrics
//! (prefixed with its name), then what every process has, unprefixed as Prometheus names them:
//! `process_*` (CPU, resident memory, open and maximum file descriptors, start time), and how
//! long the servers take (`rpc_server_duration_seconds`, `http_server_request_duration_seconds`,
//! after the OpenTelemetry conventions `rpc.server.duration` and
//! `http.server.request.duration`).

use std::sync::OnceLock;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text::encode},
    metrics::{
        counter::ConstCounter,
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::{Registry, Unit},
};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The OpenMetrics text of every metric in `registry`, then the process's standard ones.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, registry);
    // One exposition: the first part's end marker goes, the second part's stays.
    if let Some(body) = out.strip_suffix("# EOF\n") {
        out.truncate(body.len());
    }
    let _ = encode(&mut out, &standard().registry);
    out
}

/// `<prefix>_build_info{version="…"} 1`: which build is running.
pub fn register_build_info(registry: &mut Registry) {
    let info: Family<BuildLabels, Gauge> = Family::default();
    info.get_or_create(&BuildLabels {
        version: env!("CARGO_PKG_VERSION"),
    })
    .set(1);
    registry.register("build_info", "The running build, always 1", info);
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The metrics every process has.
pub struct Standard {
    registry: Registry,
    rpc: Family<RpcLabels, Histogram>,
    http: Family<HttpLabels, Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc_service: String,
    rpc_method: String,
    rpc_grpc_status_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    http_request_method: String,
    http_route: String,
    http_response_status_code: String,
}

/// The process's standard metrics, made on first use.
pub fn standard() -> &'static Standard {
    static STANDARD: OnceLock<Standard> = OnceLock::new();
    STANDARD.get_or_init(Standard::new)
}

/// Half a millisecond to ten seconds; streams (a browser's session, a watch) land in `+Inf`.
fn latency() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Standard {
    fn new() -> Self {
        let mut registry = Registry::default();
        let rpc = Family::new_with_constructor(latency as fn() -> Histogram);
        registry.register_with_unit(
            "rpc_server_duration",
            "gRPC calls served, from the request to the end of the response (a stream's life)",
            Unit::Seconds,
            rpc.clone(),
        );
        let http = Family::new_with_constructor(latency as fn() -> Histogram);
        registry.register_with_unit(
            "http_server_request_duration",
            "HTTP requests served, from the request to the end of the response body",
            Unit::Seconds,
            http.clone(),
        );
        registry.register_collector(Box::new(Process));
        Self {
            registry,
            rpc,
            http,
        }
    }

    pub(crate) fn rpc(&self, service: String, method: String, status: String, seconds: f64) {
        self.rpc
            .get_or_create(&RpcLabels {
                rpc_service: service,
                rpc_method: method,
                rpc_grpc_status_code: status,
            })
            .observe(seconds);
    }

    pub(crate) fn http(&self, method: String, route: String, status: String, seconds: f64) {
        self.http
            .get_or_create(&HttpLabels {
                http_request_method: method,
                http_route: route,
                http_response_status_code: status,
            })
            .observe(seconds);
    }
}

/// `process_*`, read from `/proc/self` at each scrape.
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(process) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(process.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "CPU time spent by the process, user and system",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory of the process",
                process.resident_bytes,
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                process.open_fds,
            ),
            (
                "process_max_fds",
                "The process's limit on open file descriptors",
                process.max_fds,
            ),
            (
                "process_start_time_seconds",
                "When the process started, in seconds since the Unix epoch",
                process.start_time,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: i64,
    open_fds: i64,
    max_fds: i64,
    start_time: i64,
}

impl ProcessStats {
    /// `None` where there is no `/proc` (not Linux).
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let number = |index: usize| fields.get(index).and_then(|f| f.parse::<f64>().ok());
        // utime, stime (fields 14 and 15) and starttime (22), in clock ticks; rss (24) in pages.
        // Counted from field 3 (the state) here.
        let ticks = clock_ticks();
        let cpu_seconds = (number(11)? + number(12)?) / ticks;
        let started_after_boot = number(19)? / ticks;
        let resident_bytes = number(21)? * page_size();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        let max_fds = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?.0;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        Some(Self {
            cpu_seconds,
            resident_bytes: resident_bytes as i64,
            open_fds: i64::try_from(open_fds).unwrap_or(i64::MAX),
            max_fds: i64::try_from(max_fds).unwrap_or(i64::MAX),
            start_time: (boot_time + started_after_boot) as i64,
        })
    }
}

/// Clock ticks per second (`getconf CLK_TCK`): 100 on every Linux this runs on.
fn clock_ticks() -> f64 {
    100.0
}

/// The memory page size: 4 KiB on the platforms this runs on (x86-64, arm64 with 4 KiB pages).
fn page_size() -> f64 {
    4096.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_is_one_document_with_the_standard_metrics() {
        let mut registry = Registry::with_prefix("demo");
        register_build_info(&mut registry);
        standard().http("GET".into(), "/x".into(), "200".into(), 0.01);
        let text = render(&registry);
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"));
        for sample in [
            "demo_build_info{version=",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
            "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/x\",http_response_status_code=\"200\"} 1",
        ] {
            assert!(text.contains(sample), "{sample}: {text}");
        }
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("a number");
        assert!(rss > 1_000_000.0, "{rss}");
    }
}
