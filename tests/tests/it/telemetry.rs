//! OpenTelemetry from the real service processes to an in-test OTLP collector.
//! (Over 300 lines: one scenario per signal: traces, metrics, logs.)

use std::time::Duration;

use testkit::{
    Stack,
    otlp::{Receiver, Span},
    stack::{Flags, static_config},
};

const EXPORT: Duration = Duration::from_secs(15);

/// The three services, exporting their spans to `collector`.
async fn traced_stack(collector: &Receiver) -> Stack {
    let endpoint = collector.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        // Export quickly rather than every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    Stack::start(
        &static_config(3478),
        Flags {
            env: &env,
            ..Default::default()
        },
    )
    .await
}

/// Registration is one trace: the gateway's `register`, its client call to ice-config, and
/// ice-config's server span, linked parent to child across the two processes.
#[tokio::test]
async fn a_registration_is_one_trace_across_gateway_and_ice_config() {
    let collector = Receiver::start().await;
    let stack = traced_stack(&collector).await;
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

/// One call setup is one trace across the three processes: the caller's `call` in its gateway,
/// the routing in signaling, each delivery in the gateways, the callee's answer and its routing.
#[tokio::test]
async fn a_call_is_one_trace_across_the_three_services() {
    use serde_json::json;
    let collector = Receiver::start().await;
    let stack = traced_stack(&collector).await;
    let mut alice = stack.browser().await;
    let mut bob = stack.browser().await;
    alice.register_ok("alice").await;
    bob.register_ok("bob").await;

    alice
        .send(json!({"id": "call", "to": "bob", "sdpOffer": "v=0 secret-offer"}))
        .await;
    let incoming = bob.expect("incomingCall").await;
    alice.send(json!({"id": "onIceCandidate", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 40000 typ relay", "sdpMid": "0", "sdpMLineIndex": 0}})).await;
    bob.send(json!({"id": "incomingCallResponse", "from": "alice", "callResponse": "accept", "sdpAnswer": "v=0 secret-answer"})).await;
    let accepted = alice.expect("callResponse").await;
    bob.expect("startCommunication").await;
    bob.expect("iceCandidate").await;
    let trace_id = incoming["traceId"].as_str().expect("traceId").to_owned();
    assert_eq!(accepted["traceId"], trace_id.as_str());
    let call_id = incoming["callId"].as_str().expect("callId").to_owned();

    let names = [
        "call",
        "route call",
        "incomingCall",
        "incomingCallResponse",
        "route answer",
        "callResponse",
        "startCommunication",
        "iceCandidate",
    ];
    let spans = testkit::eventually(EXPORT, "the call's spans", || async {
        let spans: Vec<Span> = collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        names
            .iter()
            .all(|n| spans.iter().any(|s| s.name == *n))
            .then_some(spans)
    })
    .await;
    let one = |name: &str| spans.iter().find(|s| s.name == name).cloned().expect(name);
    let (call, route, incoming_span, answer, route_answer) = (
        one("call"),
        one("route call"),
        one("incomingCall"),
        one("incomingCallResponse"),
        one("route answer"),
    );

    // Where each step ran, and what it continues from.
    assert_eq!(
        (call.service.as_str(), call.parent_span_id.as_str()),
        ("gateway", ""),
        "the call starts the trace"
    );
    assert_eq!(call.attribute("enduser.id"), Some("alice"));
    assert_eq!(
        (route.service.as_str(), route.parent_span_id.as_str()),
        ("signaling", call.span_id.as_str())
    );
    assert_eq!(
        (
            incoming_span.service.as_str(),
            incoming_span.parent_span_id.as_str()
        ),
        ("gateway", route.span_id.as_str())
    );
    assert_eq!(
        (answer.service.as_str(), answer.parent_span_id.as_str()),
        ("gateway", route.span_id.as_str())
    );
    assert_eq!(
        (
            route_answer.service.as_str(),
            route_answer.parent_span_id.as_str()
        ),
        ("signaling", answer.span_id.as_str())
    );
    for name in ["callResponse", "startCommunication", "iceCandidate"] {
        let step = one(name);
        assert_eq!(
            step.parent_span_id, route.span_id,
            "{name} continues the routed call"
        );
        assert_eq!(step.attribute("call.id"), Some(call_id.as_str()), "{name}");
    }
    assert_eq!(
        one("callResponse").attribute("call.outcome"),
        Some("accepted")
    );
    assert_eq!(route.attribute("rpc.system"), Some("grpc"));
    assert_eq!(
        route.attribute("rpc.service"),
        Some("signaling.v1.SignalingService")
    );
    // Neither SDP bodies nor credentials are in any span.
    for span in collector.spans() {
        for (key, value) in &span.attributes {
            assert!(
                !value.contains("secret-offer")
                    && !value.contains("secret-answer")
                    && !value.contains("pass-1"),
                "{} {key}={value}",
                span.name
            );
        }
    }
}

/// A page's `iceRestarted` report is a span of its call's trace, with cause, outcome and
/// duration, and moves the gateway's restart metrics; a report outside a call is refused.
#[tokio::test]
async fn an_ice_restart_is_a_span_of_the_call_and_a_metric() {
    use serde_json::json;
    let collector = Receiver::start().await;
    let stack = traced_stack(&collector).await;
    let mut alice = stack.browser().await;
    let mut bob = stack.browser().await;
    alice.register_ok("alice").await;
    bob.register_ok("bob").await;
    let (accepted, _) = alice.call_answered("alice", &mut bob, "bob").await;
    let trace_id = accepted["traceId"].as_str().expect("traceId").to_owned();

    alice
        .send(json!({"id": "iceRestarted", "cause": "failure", "outcome": "recovered", "durationMs": 2500}))
        .await;
    let span = testkit::eventually(EXPORT, "the restart's span", || async {
        collector
            .spans()
            .into_iter()
            .find(|s| s.trace_id == trace_id && s.name == "iceRestart")
    })
    .await;
    assert_eq!(span.service, "gateway");
    assert_eq!(span.attribute("ice.restart.cause"), Some("failure"));
    assert_eq!(span.attribute("call.outcome"), Some("recovered"));
    assert_eq!(span.attribute("ice.restart.duration_ms"), Some("2500"));

    let (_, metrics) = stack
        .gateway
        .get("http", "/metrics")
        .await
        .expect("metrics");
    let sample = "gateway_ice_restarts_total{cause=\"failure\",outcome=\"recovered\"}";
    assert_eq!(testkit::metric(&metrics, sample), Some(1.0), "{metrics}");
    assert_eq!(
        testkit::metric(&metrics, "gateway_ice_restart_recovery_seconds_count"),
        Some(1.0)
    );
    // Malformed: a clear error, nothing counted.
    alice
        .send(json!({"id": "iceRestarted", "cause": "boredom", "outcome": "recovered", "durationMs": 1}))
        .await;
    assert_eq!(alice.expect("error").await["reason"], "invalid_message");
    let (_, metrics) = stack
        .gateway
        .get("http", "/metrics")
        .await
        .expect("metrics");
    assert_eq!(testkit::metric(&metrics, sample), Some(1.0));
}

/// `/metrics` on signaling and the gateway moves as calls succeed and fail.
#[tokio::test]
async fn metrics_follow_calls_and_failures() {
    use serde_json::json;
    use testkit::metric;
    let stack = Stack::start(&static_config(3478), Flags::default()).await;
    let get = |url: String| async move {
        reqwest::get(url)
            .await
            .expect("GET")
            .text()
            .await
            .expect("body")
    };
    let signaling = || get(stack.signaling.url("http", "/metrics"));
    let gateway = || get(stack.gateway.url("http", "/metrics"));

    let mut alice = stack.browser().await;
    let mut bob = stack.browser().await;
    let mut carol = stack.browser().await;
    alice.register_ok("alice").await;
    bob.register_ok("bob").await;
    carol.register_ok("carol").await;
    assert_eq!(carol.register("bob").await["reason"], "already_registered");
    let mut mallory = stack.browser().await;
    assert_eq!(mallory.register("bob").await["reason"], "name_taken");

    alice.call_answered("alice", &mut bob, "bob").await;
    carol
        .send(json!({"id": "call", "to": "bob", "sdpOffer": "o"}))
        .await;
    assert_eq!(carol.expect("callResponse").await["reason"], "busy");
    carol
        .send(json!({"id": "call", "to": "nobody", "sdpOffer": "o"}))
        .await;
    assert_eq!(
        carol.expect("callResponse").await["reason"],
        "user_not_found"
    );
    mallory.send_text("{not json").await;
    mallory.expect("error").await;

    let body = signaling().await;
    let value = |sample: &str| metric(&body, sample);
    assert_eq!(
        value("signaling_calls_total{outcome=\"accepted\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(value("signaling_calls_total{outcome=\"busy\"}"), Some(1.0));
    assert_eq!(
        value("signaling_calls_total{outcome=\"user_not_found\"}"),
        Some(1.0)
    );
    assert_eq!(
        value("signaling_registrations_total{outcome=\"accepted\"}"),
        Some(3.0)
    );
    assert_eq!(
        value("signaling_registrations_total{outcome=\"name_taken\"}"),
        Some(1.0)
    );
    assert_eq!(value("signaling_call_setup_seconds_count"), Some(1.0));
    assert_eq!(value("signaling_active_calls"), Some(1.0));
    assert_eq!(value("signaling_names"), Some(3.0));

    let body = gateway().await;
    let value = |sample: &str| metric(&body, sample);
    assert_eq!(value("gateway_sessions"), Some(4.0), "{body}");
    assert_eq!(
        value("gateway_registrations_total{outcome=\"accepted\"}"),
        Some(3.0)
    );
    assert_eq!(
        value("gateway_registrations_total{outcome=\"already_registered\"}"),
        Some(1.0)
    );
    assert_eq!(
        value("gateway_registrations_total{outcome=\"name_taken\"}"),
        Some(1.0)
    );
    assert_eq!(
        value("gateway_rejected_messages_total{reason=\"invalid_json\"}"),
        Some(1.0)
    );

    // Every service says which build it is and what its process uses.
    let version = env!("CARGO_PKG_VERSION");
    for (service, body) in [
        ("signaling", signaling().await),
        ("gateway", gateway().await),
    ] {
        let info = format!("{service}_build_info{{version=\"{version}\"}}");
        assert_eq!(metric(&body, &info), Some(1.0), "{body}");
        assert!(metric(&body, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    }
    let body = signaling().await;
    let attach = "rpc_server_duration_seconds_count{rpc_service=\"signaling.v1.SignalingService\",rpc_method=\"Attach\"";
    assert!(
        !body.contains(attach),
        "the gateway's stream is still open: {body}"
    );
    let body = gateway().await;
    let upgrades = "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/one2one\",http_response_status_code=\"101\"}";
    assert_eq!(metric(&body, upgrades), Some(4.0), "{body}");

    // Hanging up ends the active call.
    alice.send(json!({"id": "stop"})).await;
    bob.expect("stopCommunication").await;
    assert_eq!(
        metric(&signaling().await, "signaling_active_calls"),
        Some(0.0)
    );
}

/// Log lines emitted inside a traced span carry its trace id, as text and as JSON.
#[tokio::test]
async fn log_lines_inside_a_span_carry_its_trace_id() {
    use stunner_proto::iceconfig::v1::{
        GetIceConfigRequest, ice_config_service_client::IceConfigServiceClient,
    };
    let collector = Receiver::start().await;
    let endpoint = collector.endpoint();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("stunnerd.conf");
    std::fs::write(&config, static_config(3478)).expect("write");
    for json in [false, true] {
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RUST_LOG", "ice_config=debug,info"),
        ];
        if json {
            env.push(("LOG_FORMAT", "json"));
        }
        let service = testkit::stack::Launch::ice_config(&config)
            .env(env.iter().copied())
            .start()
            .await;
        let mut client = IceConfigServiceClient::connect(service.url("grpc", ""))
            .await
            .expect("connect");
        let user = if json { "json-user" } else { "text-user" };
        client
            .get_ice_config(GetIceConfigRequest {
                user_id: user.into(),
                ..Default::default()
            })
            .await
            .expect("answer");
        let span = testkit::eventually(EXPORT, "the request's span", || async {
            collector
                .spans()
                .into_iter()
                .find(|s| s.service == "ice-config" && s.attribute("enduser.id") == Some(user))
        })
        .await;
        let line = testkit::eventually(EXPORT, "a log line with the trace id", || async {
            service
                .logs()
                .lines()
                .into_iter()
                .find(|l| l.contains("ICE config issued"))
        })
        .await;
        if json {
            let line: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
            assert_eq!(line["trace_id"], span.trace_id.as_str(), "{line}");
            assert_eq!(line["fields"]["message"], "ICE config issued");
            assert_eq!(line["level"], "DEBUG");
            let timestamp = line["timestamp"].as_str().expect("a timestamp");
            // RFC 3339 in UTC: 2026-11-29T18:26:37.123456Z
            let bytes = timestamp.as_bytes();
            assert!(
                bytes.len() == 27
                    && [4, 7].iter().all(|&i| bytes[i] == b'-')
                    && bytes[10] == b'T'
                    && [13, 16].iter().all(|&i| bytes[i] == b':')
                    && bytes[19] == b'.'
                    && timestamp.ends_with('Z'),
                "RFC 3339: {timestamp}"
            );
        } else {
            assert!(
                line.starts_with(&format!("trace_id={} ", span.trace_id)),
                "{line}"
            );
        }
    }
}

/// ice-config with its spans going to `endpoint` (and whatever else `env` says), and a request
/// for `user` once it is up.
async fn ice_config_traced(
    config: &std::path::Path,
    env: &[(&str, &str)],
    user: &str,
) -> testkit::Service {
    use stunner_proto::iceconfig::v1::{
        GetIceConfigRequest, ice_config_service_client::IceConfigServiceClient,
    };
    let service = testkit::stack::Launch::ice_config(config)
        .env(
            env.iter()
                .copied()
                .chain([("OTEL_BSP_SCHEDULE_DELAY", "100")]),
        )
        .start()
        .await;
    let mut client = IceConfigServiceClient::connect(service.url("grpc", ""))
        .await
        .expect("connect");
    client
        .get_ice_config(GetIceConfigRequest {
            user_id: user.into(),
            ..Default::default()
        })
        .await
        .expect("answer");
    service
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL` is honoured, with the specification's default
/// (`http/protobuf`) when unset; `OTEL_SDK_DISABLED=true` exports nothing.
#[tokio::test]
async fn the_otlp_protocol_and_sdk_switch_are_honoured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("stunnerd.conf");
    std::fs::write(&config, static_config(3478)).expect("write");
    let http = Receiver::start_http().await;
    let grpc = Receiver::start().await;
    let (http_endpoint, grpc_endpoint) = (http.endpoint(), grpc.endpoint());
    let span_of = |collector: &Receiver, user: &str| {
        collector
            .spans()
            .into_iter()
            .find(|s| s.service == "ice-config" && s.attribute("enduser.id") == Some(user))
    };

    // Unset: HTTP/protobuf, to `<endpoint>/v1/traces`.
    let _default = ice_config_traced(
        &config,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &http_endpoint)],
        "by-default",
    )
    .await;
    testkit::eventually(EXPORT, "a span over HTTP/protobuf", || async {
        span_of(&http, "by-default")
    })
    .await;
    let _explicit = ice_config_traced(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &http_endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ],
        "http-protobuf",
    )
    .await;
    testkit::eventually(EXPORT, "a span over explicit HTTP/protobuf", || async {
        span_of(&http, "http-protobuf")
    })
    .await;

    // Disabled: nothing, while a twin exporting to the same collector gets through.
    let grpc_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc_endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ];
    let mut disabled_env = grpc_env.to_vec();
    disabled_env.push(("OTEL_SDK_DISABLED", "true"));
    let _disabled = ice_config_traced(&config, &disabled_env, "disabled").await;
    let _enabled = ice_config_traced(&config, &grpc_env, "enabled").await;
    testkit::eventually(EXPORT, "the twin's span over gRPC", || async {
        span_of(&grpc, "enabled")
    })
    .await;
    assert!(span_of(&grpc, "disabled").is_none());
    assert!(
        grpc.spans()
            .iter()
            .all(|s| s.attribute("enduser.id") != Some("disabled"))
    );
}

/// A collector that is not there is said so in the log (once, not once per batch).
#[tokio::test]
async fn failing_exports_are_logged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("stunnerd.conf");
    std::fs::write(&config, static_config(3478)).expect("write");
    // A port nothing listens on.
    let nowhere = format!("http://127.0.0.1:{}", testkit::free_port());
    let service = ice_config_traced(
        &config,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &nowhere)],
        "lost",
    )
    .await;
    let complaint = "OpenTelemetry spans could not be exported";
    testkit::eventually(EXPORT, "the failed export in the log", || async {
        service
            .logs()
            .lines()
            .into_iter()
            .any(|l| l.contains(complaint))
            .then_some(())
    })
    .await;
}
