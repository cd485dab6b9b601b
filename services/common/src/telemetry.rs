//! OpenTelemetry: the tracer provider exporting over OTLP/gRPC, and W3C trace context in and out
//! of gRPC metadata.

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector},
};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context key, in gRPC metadata and in the per-message `trace_context` maps.
pub const TRACEPARENT: &str = "traceparent";

/// Whether spans are exported by this process: per-message span work is skipped when not.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports spans; hot paths skip building spans when it does not.
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn set_exporting() {
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The provider, kept so its buffered spans can be flushed at exit.
pub struct Telemetry {
    pub(crate) provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends what is buffered and stops the exporter, off the async threads (the SDK blocks
    /// while the runtime keeps driving the exporter's gRPC channel).
    pub async fn shutdown(self) {
        let _ = tokio::task::spawn_blocking(move || self.shutdown_blocking()).await;
    }

    fn shutdown_blocking(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "OpenTelemetry spans may have been lost at shutdown");
        }
    }
}

/// An endpoint is set and exporting is not switched off (`OTEL_TRACES_EXPORTER=none`).
pub(crate) fn exporter_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let off = std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim() == "none");
    !off && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The provider: batch export over OTLP/gRPC, the resource from `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES` (the crate's name when unset), the sampler from
/// `OTEL_TRACES_SAMPLER`/`_ARG`.
pub(crate) fn provider(
    service: &'static str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Makes `span` a child of the W3C context in `headers` (a gRPC request's metadata). Call it
/// before the span is first entered: entering starts the span, and its parent is fixed then.
pub fn continue_from(span: &tracing::Span, headers: &tonic::metadata::MetadataMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Metadata(headers)));
    let _ = span.set_parent(parent);
}

/// Writes the current span's W3C context into outgoing gRPC metadata.
pub fn inject_current(headers: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MetadataMut(headers))
    });
}

/// The current span's context as a `traceparent` value, if it is being traced.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of a `traceparent` value; before the span is first entered.
pub fn continue_traceparent(span: &tracing::Span, traceparent: &str) {
    let carrier: std::collections::HashMap<String, String> =
        [(TRACEPARENT.to_owned(), traceparent.to_owned())].into();
    let parent: Context = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(parent);
}

struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

struct MetadataMut<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}
