//! What every service binary shares: flag groups ([`args`]), the service runtime ([`runtime`]:
//! ports, gRPC health and reflection, the drain), the admin HTTP routes ([`admin`]), logging and
//! OpenTelemetry ([`telemetry`]), metrics rendering, the shutdown signal and duration flags.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

pub mod admin;
pub mod args;
pub mod auth;
pub mod connections;
mod logs;
pub mod metered;
pub mod metrics;
pub mod name;
pub mod runtime;
pub mod telemetry;

pub use connections::ConnectionLimits;
/// A duration flag's value: parsed by [`parse_duration`], shown in `--help` as `10s`, `1day`.
pub use humantime::Duration;
pub use runtime::{GrpcServices, Runtime, RuntimeSettings, run_binary};
pub use telemetry::Telemetry;

/// Installs the global `tracing` subscriber: structured events to stderr, filtered by
/// `RUST_LOG` (default `info`), as JSON when `LOG_FORMAT=json`, coloured only on a terminal;
/// and, when an OTLP endpoint is configured by the standard `OTEL_*` variables, spans exported
/// over OTLP (`http/protobuf` unless `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`; none when
/// `OTEL_SDK_DISABLED=true`). Call once, at startup, inside the tokio runtime (the exporter's channel
/// needs it); call [`Telemetry::shutdown`] before exiting so buffered spans are sent.
pub fn init_telemetry(service: &'static str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let ansi = std::io::stderr().is_terminal();
    // Every line emitted inside a traced span names its trace, so logs and traces meet.
    let text = (!json).then(|| {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .event_format(logs::WithTraceId(fmt::format()))
    });
    let json = json.then(|| {
        fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(logs::Json)
    });

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (provider, problem) = match telemetry::exporter_configured() {
        false => (None, None),
        true => match telemetry::provider(service) {
            Ok(provider) => {
                telemetry::set_exporting();
                (Some(provider), None)
            }
            Err(error) => (None, Some(error)),
        },
    };
    let otel = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer(service)));
    tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(text)
        .with(json)
        .init();
    if let Some(error) = problem {
        tracing::error!(%error, "OpenTelemetry export disabled");
    }
    Telemetry { provider }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Parses a duration flag: `250ms`, `10s`, `5m`, `12h`, `1d`, `1h 30m` (humantime's syntax), or a
/// bare number of seconds, as the manifests of earlier releases wrote them.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(seconds).into());
    }
    text.parse::<Duration>().map_err(|error| {
        format!("{text:?} is not a duration like 250ms, 10s, 5m, 12h or 1d: {error}")
    })
}

/// `bytes` random bytes from the OS, as lowercase hex: tokens, ids.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // The OS random source failing is not survivable for a service issuing secrets.
    getrandom::fill(&mut buffer).unwrap_or_else(|e| panic!("no OS randomness: {e}"));
    hex::encode(&buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let parse = |text| parse_duration(text).map(|d| *d);
        assert_eq!(parse("250ms"), Ok(std::time::Duration::from_millis(250)));
        assert_eq!(parse("10"), Ok(std::time::Duration::from_secs(10)));
        assert_eq!(parse("5m"), Ok(std::time::Duration::from_secs(300)));
        assert_eq!(parse("1d"), Ok(std::time::Duration::from_secs(86_400)));
        assert_eq!(parse("1h 30m"), Ok(std::time::Duration::from_secs(5_400)));
        assert!(parse("ten").is_err());
        assert!(parse("5 parsecs").is_err());
        assert!(parse("").is_err());
        // Shown in --help the way it parses back.
        let shown = Duration::from(std::time::Duration::from_secs(86_400)).to_string();
        assert_eq!(parse(&shown), Ok(std::time::Duration::from_secs(86_400)));
    }

    #[test]
    fn random_hex_tokens() {
        let token = random_hex(16);
        assert_eq!(token.len(), 32);
        assert_ne!(token, random_hex(16));
    }
}
