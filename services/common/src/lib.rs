//! What every service binary shares: logging setup, the shutdown signal, and duration flags.

use std::{io::IsTerminal, time::Duration};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

mod logs;
pub mod metrics;
pub mod telemetry;

pub use telemetry::Telemetry;

/// Installs the global `tracing` subscriber: structured events to stderr, filtered by
/// `RUST_LOG` (default `info`), as JSON when `LOG_FORMAT=json`, coloured only on a terminal;
/// and, when an OTLP endpoint is configured by the standard `OTEL_*` variables, spans exported
/// over OTLP/gRPC. Call once, at startup, inside the tokio runtime (the exporter's channel
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

/// Parses `250ms`, `10s`, `5m`, `12h`, `1d`, or a bare number of seconds (for clap flags).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 250ms, 10s, 5m, 12h or 1d"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ));
        }
    };
    number
        .checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("").is_err());
    }
}
