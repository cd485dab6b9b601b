use super::*;
use crate::stunner_config::parse;

const LIMITS: TtlPolicy = TtlPolicy {
    default: Duration::from_secs(86_400),
    max: Duration::from_secs(604_800),
};

fn configs() -> ConfigSet {
    let udp = parse(
        r#"{"version":"v1","admin":{"name":"stunner/udp-gateway"},
        "auth":{"type":"ephemeral","credentials":{"secret":"my-shared-secret"}},
        "listeners":[{"name":"stunner/udp-gateway/udp-listener","protocol":"TURN-UDP","public_address":"192.0.2.1","public_port":3478}]}"#,
    );
    let tcp = parse(
        r#"{"version":"v1","admin":{"name":"stunner/tcp-gateway"},
        "auth":{"type":"static","credentials":{"username":"user-1","password":"pass-1"}},
        "listeners":[{"name":"stunner/tcp-gateway/tcp-listener","protocol":"TURN-TCP","public_address":"192.0.2.2","public_port":443},
                     {"name":"stunner/tcp-gateway/hidden","protocol":"TURN-TCP","address":"$STUNNER_ADDR"}]}"#,
    );
    let other = parse(
        r#"{"version":"v1","admin":{"name":"media/edge"},"auth":{"type":"none"},
        "listeners":[{"name":"media/edge/udp","protocol":"UDP","public_address":"198.51.100.7"}]}"#,
    );
    let legacy = parse(
        r#"{"version":"v1alpha1","admin":{"name":"stunner-daemon"},
        "auth":{"type":"plaintext","credentials":{"username":"legacy-user","password":"legacy-password"}},
        "listeners":[{"name":"udp-listener","protocol":"UDP","public_address":"203.0.113.9","public_port":3478}]}"#,
    );
    ConfigSet::new(
        [udp, tcp, other, legacy]
            .into_iter()
            .map(|c| c.expect("valid test config"))
            .collect(),
    )
}

fn request(user: &str, filter: Filter) -> IceRequest {
    IceRequest {
        user: UserId::parse(user).expect("valid user"),
        ttl: Ttl::parse(Some(600), LIMITS).expect("valid ttl"),
        policy: IceTransportPolicy::Relay,
        filter,
        public_addr: None,
    }
}

fn filter(ns: &str, gw: &str, l: &str) -> Filter {
    let some = |s: &str| Some(s.to_owned());
    Filter::new(some(ns), some(gw), some(l))
}

fn urls(config: &IceConfig) -> Vec<Vec<&str>> {
    config
        .ice_servers
        .iter()
        .map(|s| s.urls.iter().map(String::as_str).collect())
        .collect()
}

const NOW: Duration = Duration::from_secs(1_700_000_000);

#[test]
fn one_server_per_config_with_its_credentials() {
    let now = UNIX_EPOCH + NOW + Duration::from_millis(400);
    let config = build(&configs(), &request("alice", Filter::default()), now).expect("answer");
    assert_eq!(
        urls(&config),
        [
            vec!["turn:192.0.2.1:3478?transport=udp"],
            vec!["turn:192.0.2.2:443?transport=tcp"],
            vec!["turn:198.51.100.7:3478?transport=udp"],
            vec!["turn:203.0.113.9:3478?transport=udp"],
        ]
    );
    let creds: Vec<_> = config
        .ice_servers
        .iter()
        .map(|s| {
            s.credentials
                .as_ref()
                .map(|c| (c.username.as_str(), c.credential.as_str()))
        })
        .collect();
    assert_eq!(
        creds,
        [
            // 1_700_000_000 + 600, HMAC-SHA1 under the shared secret (see credentials.rs).
            Some((
                "1700000600:alice",
                credentials::ephemeral_credential("my-shared-secret", "1700000600:alice").as_str()
            )),
            Some(("user-1", "pass-1")),
            None,
            Some(("legacy-user", "legacy-password")),
        ]
    );
    assert_eq!(
        config.expires_at,
        Some(UNIX_EPOCH + Duration::from_secs(1_700_000_600))
    );
    assert_eq!(config.policy, IceTransportPolicy::Relay);
}

#[test]
fn filters_follow_stunner_auth_service() {
    let set = configs();
    let now = UNIX_EPOCH + NOW;
    let answer = |f: Filter| build(&set, &request("", f), now).map(|c| urls(&c).concat().join(" "));

    assert_eq!(
        answer(Filter::new(Some("stunner".into()), None, None)).expect("namespace"),
        "turn:192.0.2.1:3478?transport=udp turn:192.0.2.2:443?transport=tcp"
    );
    assert_eq!(
        answer(Filter::new(
            Some("stunner".into()),
            Some("tcp-gateway".into()),
            None
        ))
        .expect("gateway"),
        "turn:192.0.2.2:443?transport=tcp"
    );
    assert_eq!(
        answer(filter("stunner", "udp-gateway", "udp-listener")).expect("listener"),
        "turn:192.0.2.1:3478?transport=udp"
    );
    // `gateway` without `namespace`, and `listener` without `gateway`, are ignored.
    assert_eq!(
        answer(Filter::new(
            None,
            Some("tcp-gateway".into()),
            Some("nope".into())
        ))
        .expect("ignored"),
        answer(Filter::default()).expect("all")
    );
    assert_eq!(
        answer(Filter::new(Some("media".into()), None, Some("nope".into()))).expect("ignored"),
        "turn:198.51.100.7:3478?transport=udp"
    );
    // Empty strings are absent, as a gRPC client sends them.
    assert_eq!(
        Filter::new(Some(String::new()), Some(String::new()), None),
        Filter::default()
    );
    for f in [
        filter("stunner", "udp-gateway", "nope"),
        filter("stunner", "nope", "udp-listener"),
        Filter::new(Some("nope".into()), None, None),
        // A listener that has no public address is never a match.
        filter("stunner", "tcp-gateway", "hidden"),
    ] {
        assert_eq!(
            answer(f.clone()),
            Err(IceError::NoMatchingListener),
            "{f:?}"
        );
    }
}

#[test]
fn no_config_and_no_listener() {
    let request = request("bob", Filter::default());
    assert_eq!(
        build(&ConfigSet::default(), &request, SystemTime::now()),
        Err(IceError::NoConfig)
    );
    let placeholders = parse(
        r#"{"version":"v1","auth":{"type":"none"},"listeners":[{"name":"a","address":"$STUNNER_ADDR"}]}"#,
    )
    .expect("valid");
    assert_eq!(
        build(
            &ConfigSet::new(vec![placeholders]),
            &request,
            SystemTime::now()
        ),
        Err(IceError::NoMatchingListener)
    );
}

#[test]
fn static_only_configs_never_expire() {
    let set = configs();
    let f = Filter::new(Some("stunner".into()), Some("tcp-gateway".into()), None);
    let config = build(&set, &request("x", f), SystemTime::now()).expect("answer");
    assert_eq!(config.expires_at, None);
    assert_eq!(config.refresh_after(SystemTime::now()), None);
}

#[test]
fn refresh_comes_before_expiry() {
    let now = UNIX_EPOCH + NOW;
    let at = |ttl: u64| IceConfig {
        ice_servers: vec![],
        policy: IceTransportPolicy::All,
        ttl: Ttl(Duration::from_secs(ttl)),
        expires_at: Some(now + Duration::from_secs(ttl)),
    };
    assert_eq!(
        at(86_400).refresh_after(now),
        Some(Duration::from_secs(69_120))
    );
    assert_eq!(at(10).refresh_after(now), Some(Duration::from_secs(8)));
    assert_eq!(at(2).refresh_after(now), Some(Duration::from_secs(1)));
    assert_eq!(at(1).refresh_after(now), Some(Duration::from_millis(500)));
    // Already expired: refresh at once.
    assert_eq!(
        at(1).refresh_after(now + Duration::from_secs(5)),
        Some(Duration::ZERO)
    );
}

#[test]
fn request_values_are_validated() {
    assert_eq!(
        UserId::parse("alice@example.org").map(|u| u.0),
        Ok("alice@example.org".into())
    );
    assert_eq!(UserId::parse(""), Ok(UserId::default()));
    assert_eq!(UserId::parse("a:b"), Err(RequestError::UserBadChar));
    assert_eq!(UserId::parse("a\nb"), Err(RequestError::UserBadChar));
    assert_eq!(
        UserId::parse(&"x".repeat(257)),
        Err(RequestError::UserTooLong)
    );
    assert!(
        UserId::parse(&"é".repeat(256)).is_ok(),
        "characters, not bytes"
    );

    assert_eq!(Ttl::parse(None, LIMITS), Ok(Ttl(LIMITS.default)));
    assert_eq!(
        Ttl::parse(Some(60), LIMITS),
        Ok(Ttl(Duration::from_secs(60)))
    );
    assert_eq!(
        Ttl::parse(Some(0), LIMITS),
        Err(RequestError::TtlOutOfRange {
            got: 0,
            max: 604_800
        })
    );
    assert_eq!(
        Ttl::parse(Some(604_801), LIMITS),
        Err(RequestError::TtlOutOfRange {
            got: 604_801,
            max: 604_800
        })
    );
    // The REST API's compatible reading: brought within the limits, and said so.
    let clamp = |s| Ttl::clamp(s, LIMITS);
    assert_eq!(clamp(None), (Ttl(LIMITS.default), false));
    assert_eq!(clamp(Some(60)), (Ttl(Duration::from_secs(60)), false));
    for low in [0, -1, i64::MIN] {
        assert_eq!(clamp(Some(low)), (Ttl(Duration::from_secs(1)), true));
    }
    for high in [604_801, i64::MAX] {
        assert_eq!(clamp(Some(high)), (Ttl(LIMITS.max), true));
    }

    assert_eq!(
        UserId::parse_allowing_colons("urn:user:7").map(|u| u.as_str().to_owned()),
        Ok("urn:user:7".into())
    );
    assert_eq!(
        UserId::parse_allowing_colons("a:\u{7}"),
        Err(RequestError::UserBadChar)
    );

    assert_eq!("relay".parse(), Ok(IceTransportPolicy::Relay));
    assert_eq!("public".parse(), Ok(IceTransportPolicy::Public));
    assert_eq!(
        "RELAY".parse::<IceTransportPolicy>(),
        Err(RequestError::BadPolicy("RELAY".into()))
    );
}

#[test]
fn debug_output_hides_credentials() {
    let config = build(
        &configs(),
        &request("alice", Filter::default()),
        SystemTime::now(),
    )
    .expect("answer");
    let shown = format!("{config:?}");
    assert!(!shown.contains("pass-1"), "{shown}");
    for server in &config.ice_servers {
        if let Some(c) = &server.credentials {
            assert!(!shown.contains(&c.credential), "{shown}");
        }
    }
}

/// STUNner's placeholders never reach a browser: the listener is skipped, and said why, unless
/// a public address is given from outside the config (`public-addr`, `STUNNER_PUBLIC_ADDR`),
/// which then replaces every listener's address and keeps its public port.
#[test]
fn placeholders_are_skipped_unless_a_public_address_is_given() {
    let config = parse(
        r#"{"version":"v1","admin":{"name":"ns/gw"},"auth":{"type":"none"},"listeners":[
        {"name":"ns/gw/node","protocol":"TURN-UDP","address":"__node_address_placeholder","port":3478,"public_port":30478},
        {"name":"ns/gw/pod","protocol":"TURN-TCP","address":"$STUNNER_ADDR","port":3479},
        {"name":"ns/gw/lb","protocol":"TURN-UDP","public_address":"198.51.100.9","public_port":3480}]}"#,
    )
    .expect("valid");
    let set = ConfigSet::new(vec![config]);
    let urls = |public_addr: Option<&str>| {
        let mut request = request("bob", Filter::default());
        request.public_addr = public_addr.map(|a| PublicAddr::parse(a).expect("a host"));
        build(&set, &request, SystemTime::now())
            .map(|c| c.ice_servers[0].urls.clone())
            .expect("one server")
    };
    assert_eq!(urls(None), ["turn:198.51.100.9:3480?transport=udp"]);
    assert_eq!(
        urls(Some("203.0.113.5")),
        [
            "turn:203.0.113.5:30478?transport=udp",
            "turn:203.0.113.5:3480?transport=udp",
            "turn:203.0.113.5:3479?transport=tcp",
        ],
        "UDP before TCP, each as listed"
    );
    assert_eq!(
        urls(Some("[2001:db8::5]")),
        [
            "turn:[2001:db8::5]:30478?transport=udp",
            "turn:[2001:db8::5]:3480?transport=udp",
            "turn:[2001:db8::5]:3479?transport=tcp",
        ]
    );
    let skipped = unadvertised(&set, None);
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0].contains("ns/gw/node") && skipped[0].contains("__node_address_placeholder"));
    assert!(skipped[1].contains("$STUNNER_ADDR"));
    let given = PublicAddr::parse("203.0.113.5").expect("a host");
    assert!(unadvertised(&set, Some(&given)).is_empty());
    for bad in ["", "a b", "turn:x", "x/y"] {
        assert_eq!(
            PublicAddr::parse(bad),
            Err(RequestError::BadPublicAddr(bad.into()))
        );
    }
}

/// URIs come UDP, TCP, TLS, DTLS, whatever order the config lists its listeners in.
#[test]
fn uris_come_in_protocol_order() {
    let config = parse(
        r#"{"version":"v1","auth":{"type":"none"},"listeners":[
        {"name":"d","protocol":"TURN-DTLS","public_address":"192.0.2.1","port":4},
        {"name":"c","protocol":"TURN-TLS","public_address":"192.0.2.1","port":3},
        {"name":"b","protocol":"TURN-TCP","public_address":"192.0.2.1","port":2},
        {"name":"a","protocol":"TURN-UDP","public_address":"192.0.2.1","port":1}]}"#,
    )
    .expect("valid");
    let set = ConfigSet::new(vec![config]);
    let built = build(&set, &request("bob", Filter::default()), SystemTime::now()).expect("built");
    assert_eq!(
        built.ice_servers[0].urls,
        [
            "turn:192.0.2.1:1?transport=udp",
            "turn:192.0.2.1:2?transport=tcp",
            "turns:192.0.2.1:3?transport=tcp",
            "turns:192.0.2.1:4?transport=udp",
        ]
    );
}
