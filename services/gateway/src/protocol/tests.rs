use super::*;

#[test]
fn decodes_the_tutorial_messages() {
    let register = ClientMessage::decode(r#"{"id":"register","name":"alice"}"#).expect("register");
    assert!(
        matches!(register, ClientMessage::Register { name, resume_token: None, rejoin: None, extensions: false } if name == "alice")
    );

    // The old page sends `from` with a call; it is accepted and ignored.
    let call = ClientMessage::decode(r#"{"id":"call","from":"x","to":"bob","sdpOffer":"v=0"}"#)
        .expect("call");
    assert!(
        matches!(call, ClientMessage::Call { to, sdp_offer, traceparent: None } if to == "bob" && sdp_offer == "v=0")
    );

    // The old page's busy rejection carries a `message`.
    let reject = ClientMessage::decode(
        r#"{"id":"incomingCallResponse","from":"alice","callResponse":"reject","message":"bussy"}"#,
    )
    .expect("reject");
    assert!(matches!(
        reject,
        ClientMessage::IncomingCallResponse {
            call_response: CallResponse::Reject,
            ..
        }
    ));

    let candidate = ClientMessage::decode(
        r#"{"id":"onIceCandidate","candidate":{"candidate":"candidate:0 1 UDP 1 10.0.0.1 3478 typ relay","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null}}"#,
    )
    .expect("candidate");
    let ClientMessage::OnIceCandidate { candidate } = candidate else {
        panic!("candidate")
    };
    assert_eq!(candidate.sdp_m_line_index, Some(0));
    assert_eq!(
        serde_json::to_string(&candidate).expect("encode"),
        r#"{"candidate":"candidate:0 1 UDP 1 10.0.0.1 3478 typ relay","sdpMid":"0","sdpMLineIndex":0}"#
    );
    assert!(matches!(
        ClientMessage::decode(r#"{"id":"stop"}"#),
        Ok(ClientMessage::Stop)
    ));
}

#[test]
fn every_decode_error_has_a_reason() {
    let cases = [
        ("", "invalid_json"),
        ("{", "invalid_json"),
        ("null", "invalid_message"),
        ("{}", "invalid_message"),
        (r#"{"id":7}"#, "invalid_message"),
        (r#"{"id":"hello"}"#, "unknown_id"),
        (r#"{"id":"register","name":5}"#, "invalid_message"),
        (
            r#"{"id":"incomingCallResponse","from":"a","callResponse":"ok"}"#,
            "invalid_message",
        ),
    ];
    for (text, reason) in cases {
        let error = ClientMessage::decode(text).expect_err(text);
        assert_eq!(error.reason().as_str(), reason, "{text}: {error}");
    }
}

#[test]
fn an_unknown_id_is_quoted_only_in_part() {
    let text = format!(r#"{{"id":"{}"}}"#, "é".repeat(60_000));
    let error = ClientMessage::decode(&text).expect_err("unknown");
    assert_eq!(
        error,
        DecodeError::UnknownId(format!("{}…", "é".repeat(32)))
    );
    assert_eq!(
        ClientMessage::decode(r#"{"id":"hello"}"#).err(),
        Some(DecodeError::UnknownId("hello".into()))
    );
}

#[test]
fn encodes_the_tutorial_shapes() {
    let accepted = ServerMessage::RegisterResponse {
        response: Verdict::Accepted,
        message: None,
        reason: None,
        ice_configuration: Some(IceConfiguration {
            ice_servers: vec![IceServer {
                urls: vec!["turn:1.2.3.4:3478?transport=udp".into()],
                username: "u".into(),
                credential: "p".into(),
            }],
            ice_transport_policy: "relay",
        }),
        resume_token: Some("t".into()),
        call: None,
    };
    assert_eq!(
        accepted.encode(),
        r#"{"id":"registerResponse","response":"accepted","iceConfiguration":{"iceServers":[{"urls":["turn:1.2.3.4:3478?transport=udp"],"username":"u","credential":"p"}],"iceTransportPolicy":"relay"},"resumeToken":"t"}"#
    );
    let rejected = ServerMessage::CallResponse {
        response: Verdict::Rejected,
        sdp_answer: None,
        message: Some("user declined".into()),
        reason: Some("declined"),
        call_id: None,
        trace_id: None,
        negotiation: None,
    };
    assert_eq!(
        rejected.encode(),
        r#"{"id":"callResponse","response":"rejected","message":"user declined","reason":"declined"}"#
    );
}

#[test]
fn every_message_id_is_known() {
    let samples = [
        r#"{"id":"register","name":"a"}"#,
        r#"{"id":"call","to":"b","sdpOffer":"o"}"#,
        r#"{"id":"incomingCallResponse","from":"a","callResponse":"reject"}"#,
        r#"{"id":"onIceCandidate","candidate":{"candidate":"c"}}"#,
        r#"{"id":"stop"}"#,
    ];
    for sample in samples {
        let message = ClientMessage::decode(sample).expect(sample);
        let tag: serde_json::Value = serde_json::from_str(sample).expect("json");
        let id: ClientId = serde_json::from_value(tag["id"].clone()).expect("a known id");
        assert_eq!(message.id(), id, "{sample}");
        // A malformed message of a known id is invalid, not unknown.
        let malformed = format!(r#"{{"id":{},"x":[}}"#, tag["id"]);
        let broken = format!(r#"{{"id":{}}}"#, tag["id"]);
        if !matches!(message, ClientMessage::Stop) {
            assert!(
                matches!(
                    ClientMessage::decode(&broken),
                    Err(DecodeError::Invalid { .. })
                ),
                "{broken}"
            );
        }
        assert!(matches!(
            ClientMessage::decode(&malformed),
            Err(DecodeError::Json(_))
        ));
    }
}
