use super::*;

/// The tutorial's legacy ConfigMap content (v1alpha1, plaintext auth).
const V1ALPHA1: &str = r#"{"version":"v1alpha1","admin":{"name":"stunner-daemon","loglevel":"all:INFO"},
 "auth":{"type":"plaintext","realm":"stunner.l7mp.io","credentials":{"username":"user-1","password":"pass-1"}},
 "listeners":[{"name":"udp-listener","protocol":"UDP","public_address":"34.118.82.225","public_port":3478,
   "address":"$STUNNER_ADDR","port":3478,"min_relay_port":32768,"max_relay_port":65535,"routes":["stunner"]},
   {"name":"tcp-listener","protocol":"TCP","public_address":"34.118.89.139","public_port":3478,
   "address":"$STUNNER_ADDR","port":3478,"routes":["stunner"]}],
 "clusters":[{"name":"stunner","type":"STRICT_DNS","endpoints":["stunner.stunner.svc.cluster.local"]}]}"#;

/// An operator-era config (v1, ephemeral auth), as the config discovery service serves it.
const V1: &str = r#"{"version":"v1","admin":{"name":"stunner/udp-gateway","logLevel":"all:INFO"},
 "auth":{"type":"ephemeral","realm":"stunner.l7mp.io","credentials":{"secret":"my-shared-secret"}},
 "listeners":[{"name":"stunner/udp-gateway/udp-listener","protocol":"TURN-UDP","public_address":"34.116.255.91",
   "public_port":3478,"address":"$STUNNER_ADDR","port":3478,"routes":["stunner/stunner-headless"]}],
 "clusters":[{"name":"stunner/stunner-headless","type":"STATIC","protocol":"UDP","endpoints":["10.76.0.15"]}]}"#;

const V1_YAML: &str = r#"
version: v1
admin:
  name: media/tcp-gateway
  logLevel: all:DEBUG
Auth:
  Type: longterm
  credentials:
    secret: yaml-secret
listeners:
  - name: media/tcp-gateway/tcp-listener
    protocol: turn-tcp
    address: 10.0.0.7
    port: 443
  - name: media/tcp-gateway/tls-listener
    protocol: TURN-TLS
    public_address: turn.example.org
    port: 5349
  - name: media/tcp-gateway/dtls-listener
    Protocol: dtls
    public_address: "2001:db8::1"
    public_port: 5350
"#;

fn endpoint(host: &str, port: u16) -> Option<(String, u16)> {
    Some((host.to_owned(), port))
}

#[test]
fn legacy_tutorial_config() {
    let config = parse(V1ALPHA1).expect("parses");
    assert_eq!(config.name, "stunner-daemon");
    assert_eq!(config.realm, "stunner.l7mp.io");
    assert_eq!(
        config.auth,
        Auth::Static {
            username: "user-1".into(),
            password: "pass-1".into()
        }
    );
    assert_eq!(config.gateway_ref(), None);
    let uris: Vec<_> = config
        .listeners
        .iter()
        .filter_map(|l| l.turn_uri(None))
        .collect();
    assert_eq!(
        uris,
        [
            "turn:34.118.82.225:3478?transport=udp",
            "turn:34.118.89.139:3478?transport=tcp"
        ]
    );
    assert_eq!(config.listeners[0].path(), None);
}

#[test]
fn operator_config() {
    let config = parse(V1).expect("parses");
    assert_eq!(config.gateway_ref(), Some(("stunner", "udp-gateway")));
    assert_eq!(
        config.auth,
        Auth::Ephemeral {
            secret: "my-shared-secret".into()
        }
    );
    let listener = &config.listeners[0];
    assert_eq!(listener.protocol, Protocol::Udp);
    assert_eq!(
        listener.path(),
        Some(("stunner", "udp-gateway", "udp-listener"))
    );
    assert_eq!(listener.endpoint, endpoint("34.116.255.91", 3478));
}

#[test]
fn yaml_with_mixed_case_keys_and_every_protocol() {
    let config = parse(V1_YAML).expect("parses");
    assert_eq!(
        config.auth,
        Auth::Ephemeral {
            secret: "yaml-secret".into()
        }
    );
    let uris: Vec<_> = config
        .listeners
        .iter()
        .filter_map(|l| l.turn_uri(None))
        .collect();
    assert_eq!(
        uris,
        [
            "turn:10.0.0.7:443?transport=tcp",
            "turns:turn.example.org:5349?transport=tcp",
            "turns:[2001:db8::1]:5350?transport=udp",
        ]
    );
}

#[test]
fn key_case_and_auth_aliases() {
    for (kind, expected) in [
        ("plaintext", "static"),
        ("static", "static"),
        ("STATIC", "static"),
        ("longterm", "ephemeral"),
        ("ephemeral", "ephemeral"),
        ("timewindowed", "ephemeral"),
        ("none", "none"),
    ] {
        let doc = format!(
            r#"{{"Version":"v1","ADMIN":{{"Name":"ns/gw"}},"auth":{{"TYPE":"{kind}",
            "credentials":{{"username":"u","password":"p","secret":"s"}}}},"listeners":[]}}"#
        );
        let config = parse(&doc).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(config.auth.kind().as_str(), expected, "auth type {kind}");
        assert_eq!(config.name, "ns/gw");
    }
}

#[test]
fn placeholders_and_wildcards_are_never_advertised() {
    let doc = r#"{"version":"v1","auth":{"type":"none"},"listeners":[
        {"name":"a","protocol":"UDP","address":"$STUNNER_ADDR","port":3478},
        {"name":"b","protocol":"UDP","public_address":"","address":"0.0.0.0"},
        {"name":"c","protocol":"UDP","public_address":"$PUBLIC","address":"::"},
        {"name":"d","protocol":"UDP","address":"192.0.2.1"},
        {"name":"e","protocol":"UDP","public_address":"198.51.100.2","port":3479}]}"#;
    let config = parse(doc).expect("parses");
    let endpoints: Vec<_> = config
        .listeners
        .iter()
        .map(|l| l.endpoint.clone())
        .collect();
    assert_eq!(
        endpoints,
        [
            None,
            None,
            None,
            endpoint("192.0.2.1", 3478),
            endpoint("198.51.100.2", 3479)
        ]
    );
}

#[test]
fn defaults() {
    let config = parse(
        r#"{"version":"v1","auth":{"credentials":{"username":"u","password":"p"}},
        "listeners":[{"address":"192.0.2.1"}]}"#,
    )
    .expect("parses");
    assert_eq!(config.realm, DEFAULT_REALM);
    assert_eq!(config.auth.kind(), AuthKind::Static);
    assert_eq!(config.listeners[0].protocol, Protocol::Udp);
    assert_eq!(
        config.listeners[0].endpoint,
        endpoint("192.0.2.1", DEFAULT_PORT)
    );
}

#[test]
fn a_list_of_configs() {
    let doc = format!(r#"{{"version":"v1","items":[{V1},{V1ALPHA1}]}}"#);
    let configs = parse_document(&doc).expect("parses");
    let names: Vec<_> = configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["stunner/udp-gateway", "stunner-daemon"]);
    assert_eq!(parse_document(V1).expect("single").len(), 1);
    assert_eq!(parse_document(r#"{"items":[]}"#).expect("empty list"), []);
}

#[test]
fn malformed_documents() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("   \n", "empty"),
        ("{", "not valid JSON"),
        (
            r#"{"version":"v1","auth":{"type":"static"}"#,
            "not valid JSON",
        ),
        ("version: [v1\n", "not valid YAML"),
        ("- a\n- b\n", "must be an object"),
        ("42", "must be an object"),
        (r#"{"admin":{"name":"x"}}"#, "missing `version`"),
        (r#"{"version":"v2"}"#, "unsupported version \"v2\""),
        (
            r#"{"version":"v1","auth":{"type":"oauth"}}"#,
            "unknown auth type \"oauth\"",
        ),
        (
            r#"{"version":"v1","auth":{"type":"static","credentials":{"username":"u"}}}"#,
            "needs `auth.credentials.password`",
        ),
        (
            r#"{"version":"v1","auth":{"type":"ephemeral","credentials":{"secret":""}}}"#,
            "needs `auth.credentials.secret`",
        ),
        (
            r#"{"version":"v1","auth":{"type":"none"},"listeners":[{"name":"l","protocol":"SCTP"}]}"#,
            "unknown protocol \"SCTP\"",
        ),
        (
            r#"{"version":"v1","auth":{"type":"none"},"listeners":[{"name":"l","port":70000}]}"#,
            "port 70000 is out of range",
        ),
        (
            r#"{"version":"v1","auth":{"type":"none"},"listeners":[{"name":"l","port":"3478"}]}"#,
            "invalid type",
        ),
        (
            r#"{"version":"v1","listeners":{"name":"l"}}"#,
            "invalid type",
        ),
        (
            r#"{"items":[{"version":"v1","auth":{"type":"none"}},{"version":"v9"}]}"#,
            "unsupported version \"v9\"",
        ),
    ];
    for (doc, expected) in cases {
        let error = parse_document(doc).expect_err(doc).to_string();
        assert!(
            error.contains(expected),
            "{doc:?}: got {error:?}, want {expected:?}"
        );
    }
}

#[test]
fn debug_output_hides_secrets() {
    let config = parse(V1).expect("parses");
    let shown = format!("{config:?}");
    assert!(!shown.contains("my-shared-secret"), "{shown}");
    let config = parse(V1ALPHA1).expect("parses");
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("pass-1") && shown.contains("user-1"),
        "{shown}"
    );
}

#[test]
fn a_huge_document_is_refused_before_it_is_parsed() {
    let huge = format!("{V1ALPHA1}\n# {}\n", "x".repeat(MAX_DOCUMENT));
    assert_eq!(parse(&huge), Err(ConfigError::TooLarge(huge.len())));
    assert_eq!(
        parse_document(&huge),
        Err(ConfigError::TooLarge(huge.len()))
    );
}

/// Found by fuzzing: an address with spaces in it became a TURN URI with spaces in it.
#[test]
fn an_address_that_is_no_host_is_refused() {
    let config = V1.replace("34.116.255.91", "2001:db8    ::1");
    assert_eq!(
        parse(&config),
        Err(ConfigError::BadAddress {
            listener: "stunner/udp-gateway/udp-listener".into(),
            address: "2001:db8    ::1".into(),
        })
    );
    for host in [
        "turn.example.org",
        "10.0.0.1",
        "2001:db8::1",
        "stunner_udp.local",
    ] {
        assert!(parse(&V1.replace("34.116.255.91", host)).is_ok(), "{host}");
    }
}
