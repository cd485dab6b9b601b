//! OpenTelemetry from the real service processes to an in-test OTLP collector.

use std::time::Duration;

use testkit::{
    Stack,
    otlp::{Receiver, Span},
    stack::{Flags, static_config},
};

const EXPORT: Duration = Duration::from_secs(15);

/// Registration is one trace: the gateway's `register`, its client call to ice-config, and
/// ice-config's server span, linked parent to child across the two processes.
#[tokio::test]
async fn a_registration_is_one_trace_across_gateway_and_ice_config() {
    let collector = Receiver::start().await;
    let endpoint = collector.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // Export quickly rather than every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let stack = Stack::start(
        &static_config(3478),
        Flags {
            env: &env,
            ..Default::default()
        },
    )
    .await;
    let mut alice = stack.browser().await;
    alice.register_ok("alice").await;

    let rpc = "iceconfig.v1.IceConfigService/GetIceConfig";
    let (register, client, server) =
        testkit::eventually(EXPORT, "the registration's spans", || async {
            let spans = collector.spans();
            let find = |service: &str, name: &str, kind: i32| -> Option<Span> {
                spans
                    .iter()
                    .find(|s| s.service == service && s.name == name && s.kind == kind)
                    .cloned()
            };
            Some((
                find("gateway", "register", 2)?,
                find("gateway", rpc, 3)?,
                find("ice-config", rpc, 2)?,
            ))
        })
        .await;

    assert_eq!(
        register.parent_span_id, "",
        "registration starts its own trace"
    );
    assert_eq!(register.attribute("enduser.id"), Some("alice"));
    assert_eq!(
        (client.trace_id.as_str(), client.parent_span_id.as_str()),
        (register.trace_id.as_str(), register.span_id.as_str())
    );
    assert_eq!(
        (server.trace_id.as_str(), server.parent_span_id.as_str()),
        (register.trace_id.as_str(), client.span_id.as_str()),
        "the W3C context crossed the gRPC hop"
    );
    for span in [&client, &server] {
        assert_eq!(span.attribute("rpc.system"), Some("grpc"), "{span:?}");
        assert_eq!(
            span.attribute("rpc.service"),
            Some("iceconfig.v1.IceConfigService")
        );
        assert_eq!(span.attribute("rpc.method"), Some("GetIceConfig"));
        assert_eq!(span.attribute("rpc.grpc.status_code"), Some("0"));
    }
    assert_eq!(server.attribute("enduser.id"), Some("alice"));
    // No credential anywhere in what was exported.
    for span in collector.spans() {
        for (key, value) in &span.attributes {
            assert!(!value.contains("pass-1"), "{} {key}={value}", span.name);
        }
    }
}

/// Without an endpoint there is no exporter, and nothing complains about it.
#[tokio::test]
async fn without_an_endpoint_the_services_start_quietly() {
    let stack = Stack::start(&static_config(3478), Flags::default()).await;
    let mut alice = stack.browser().await;
    alice.register_ok("alice").await;
    for service in [&stack.ice_config, &stack.signaling, &stack.gateway] {
        let noisy: Vec<String> = service
            .logs()
            .lines()
            .into_iter()
            .filter(|line| {
                line.contains("ERROR")
                    || line.contains("WARN")
                    || line.to_lowercase().contains("opentelemetry")
            })
            .collect();
        assert!(noisy.is_empty(), "{noisy:?}");
    }
}
