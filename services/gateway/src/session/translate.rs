//! Translation between the browser protocol and `signaling.v1`, with no socket and no state
//! beyond what is passed in: what a browser message asks of signaling, and what a signaling
//! message tells the browser.
//! (Over 300 lines with its tests, which read as the table of the translation.)

use stunner_proto::signaling::v1::{
    self as pb, gateway_message::Body as Up, session_message::Body as Down,
};

use crate::{
    protocol::{
        CallInfo, CallResponse, ClientMessage, DescriptionKind, IceConfiguration, Negotiation,
        RestartCause, RestartOutcome, ServerMessage, SessionDescription, Verdict,
    },
    reason::{GatewayReason, Reason},
};

/// What a browser message asks for.
#[derive(Debug, PartialEq)]
pub enum Upward {
    /// A registration: credentials first, then the claim on the name.
    Register {
        name: String,
        resume_token: Option<String>,
        rejoin: Option<String>,
        extensions: bool,
    },
    /// A call, traced from the page's own `traceparent` if it sent one.
    Call {
        to: String,
        sdp_offer: String,
        traceparent: Option<String>,
    },
    /// An answer to an incoming call, continuing its trace.
    Answer(pb::Answer),
    /// Carried to signaling as it is.
    Forward(Up),
    /// A renegotiation: carried to signaling unless the page renegotiates too often.
    Negotiate(pb::Negotiate),
    /// A report of an ICE restart, for this gateway's metrics and the call's trace.
    Restarted {
        cause: RestartCause,
        outcome: RestartOutcome,
        duration: std::time::Duration,
    },
    /// Refused here, with this reply.
    Refuse(ServerMessage),
}

pub fn upward(message: ClientMessage) -> Upward {
    match message {
        ClientMessage::Register {
            name,
            resume_token,
            rejoin,
            extensions,
        } => Upward::Register {
            name,
            resume_token: resume_token.filter(|t| !t.is_empty()),
            rejoin: rejoin.filter(|c| !c.is_empty()),
            extensions,
        },
        ClientMessage::Call {
            to,
            sdp_offer,
            traceparent,
        } => Upward::Call {
            to,
            sdp_offer,
            traceparent,
        },
        ClientMessage::IncomingCallResponse {
            from,
            call_response,
            sdp_answer,
        } => {
            let accept = call_response == CallResponse::Accept;
            if accept && sdp_answer.as_deref().is_none_or(str::is_empty) {
                return Upward::Refuse(error(
                    "an accepted call needs an sdpAnswer",
                    GatewayReason::InvalidMessage.into(),
                ));
            }
            Upward::Answer(pb::Answer {
                from,
                accept,
                sdp_answer: sdp_answer.unwrap_or_default(),
            })
        }
        ClientMessage::OnIceCandidate { candidate } => {
            // Encoding a decoded candidate cannot fail: plain strings and numbers.
            let candidate_json = serde_json::to_string(&candidate).unwrap_or_default();
            if candidate_json.len() > MAX_CANDIDATE {
                return Upward::Refuse(error(
                    &format!("a candidate may be at most {MAX_CANDIDATE} bytes"),
                    GatewayReason::InvalidMessage.into(),
                ));
            }
            Upward::Forward(Up::Candidate(pb::Candidate { candidate_json }))
        }
        ClientMessage::Stop => Upward::Forward(Up::Stop(pb::Stop {})),
        ClientMessage::Negotiate { description } => {
            if description.sdp.trim().is_empty() {
                return Upward::Refuse(error(
                    "a description needs an sdp",
                    GatewayReason::InvalidMessage.into(),
                ));
            }
            Upward::Negotiate(pb::Negotiate {
                r#type: description.kind.as_str().to_owned(),
                sdp: description.sdp,
                call_id: String::new(),
            })
        }
        ClientMessage::IceRestarted {
            cause,
            outcome,
            duration_ms,
        } => Upward::Restarted {
            cause,
            outcome,
            duration: std::time::Duration::from_millis(duration_ms),
        },
    }
}

/// The largest candidate relayed, as JSON: a real one is a few hundred bytes, and each is kept
/// (buffered while a call rings, queued for the peer) at the server's expense.
pub const MAX_CANDIDATE: usize = 4096;
/// What a signaling message means for the session.
#[derive(Debug, PartialEq)]
pub enum Downward {
    /// Tell the browser this.
    Tell(ServerMessage),
    /// The name is the session's: the browser is told with the credentials fetched for it.
    Registered {
        name: String,
        resume_token: String,
        call: Option<CallInfo>,
    },
    /// The registration was refused: tell the browser this; the credentials are dropped.
    RegisterRefused(ServerMessage),
    /// Another session (a reload) took the name: tell the browser this; it is unregistered.
    Replaced(ServerMessage),
    /// Nothing the browser can use.
    Nothing,
}

/// `body` for a browser session; `trace_id` is the call's, shown with the call's messages.
pub fn downward(body: Down, trace_id: Option<String>) -> Downward {
    let tell = Downward::Tell;
    match body {
        Down::Registered(registered) => Downward::Registered {
            name: registered.name,
            resume_token: registered.resume_token,
            call: registered.call.map(|call| CallInfo {
                call_id: call.call_id,
                peer: call.peer,
                role: if call.caller { "caller" } else { "callee" },
            }),
        },
        Down::Refused(refused) => {
            let reason = Reason::from(refused.reason());
            match refused.request() {
                pb::Request::Register if refused.reason() == pb::Reason::Replaced => {
                    Downward::Replaced(error(&refused.message, reason))
                }
                pb::Request::Register => {
                    Downward::RegisterRefused(register_refused(&refused.message, reason))
                }
                pb::Request::Call => tell(ServerMessage::CallResponse {
                    response: Verdict::Rejected,
                    sdp_answer: None,
                    message: Some(refused.message),
                    reason: Some(reason.as_str()),
                    call_id: None,
                    trace_id,
                    negotiation: None,
                }),
                _ => tell(error(&refused.message, reason)),
            }
        }
        Down::IncomingCall(call) => tell(ServerMessage::IncomingCall {
            from: call.from,
            sdp_offer: call.sdp_offer,
            call_id: call.call_id,
            trace_id,
        }),
        Down::CallAccepted(accepted) => tell(ServerMessage::CallResponse {
            response: Verdict::Accepted,
            sdp_answer: Some(accepted.sdp_answer),
            message: None,
            reason: None,
            call_id: Some(accepted.call_id),
            trace_id,
            negotiation: accepted.negotiation.map(negotiation),
        }),
        Down::StartCommunication(start) => tell(ServerMessage::StartCommunication {
            call_id: start.call_id,
            trace_id,
            negotiation: start.negotiation.map(negotiation),
        }),
        Down::Negotiate(negotiate) => {
            let kind = match negotiate.r#type.as_str() {
                "offer" => DescriptionKind::Offer,
                "answer" => DescriptionKind::Answer,
                // Written by a gateway from a decoded description, so it is one of the two.
                _ => return Downward::Nothing,
            };
            tell(ServerMessage::Negotiate {
                description: SessionDescription {
                    kind,
                    sdp: negotiate.sdp,
                },
                call_id: negotiate.call_id,
            })
        }
        // Written by a gateway from a decoded candidate, so it decodes.
        Down::Candidate(candidate) => match serde_json::from_str(&candidate.candidate_json) {
            Ok(candidate) => tell(ServerMessage::IceCandidate { candidate }),
            Err(_) => Downward::Nothing,
        },
        Down::StopCommunication(stop) => tell(ServerMessage::StopCommunication {
            reason: Reason::from(stop.reason()).as_str(),
            message: stop.message,
            call_id: stop.call_id,
            trace_id,
        }),
        // For the link, not the browser.
        Down::Welcome(_) | Down::Processed(_) | Down::Draining(_) => Downward::Nothing,
    }
}

fn negotiation(negotiation: pb::Negotiation) -> Negotiation {
    Negotiation {
        polite: negotiation.polite,
    }
}

/// The accepted `registerResponse` (with the call it rejoined, if any).
pub fn registered(
    ice_configuration: IceConfiguration,
    resume_token: String,
    call: Option<CallInfo>,
) -> ServerMessage {
    ServerMessage::RegisterResponse {
        response: Verdict::Accepted,
        message: None,
        reason: None,
        ice_configuration: Some(ice_configuration),
        resume_token: Some(resume_token),
        call,
    }
}

pub fn register_refused(message: &str, reason: Reason) -> ServerMessage {
    ServerMessage::RegisterResponse {
        response: Verdict::Rejected,
        message: Some(message.to_owned()),
        reason: Some(reason.as_str()),
        ice_configuration: None,
        resume_token: None,
        call: None,
    }
}

pub fn error(message: &str, reason: Reason) -> ServerMessage {
    ServerMessage::Error {
        message: message.to_owned(),
        reason: reason.as_str(),
    }
}

/// A message for signaling from `session`, registered (as far as the gateway knows) as `user`.
pub fn up(session: u64, user: Option<&str>, body: Up) -> pb::GatewayMessage {
    pb::GatewayMessage {
        session_id: session,
        body: Some(body),
        user: user.unwrap_or_default().to_owned(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::IceCandidateInit;

    fn decode(text: &str) -> Upward {
        upward(ClientMessage::decode(text).expect(text))
    }

    #[test]
    fn browser_messages_become_requests() {
        assert_eq!(
            decode(r#"{"id":"register","name":"alice","resumeToken":"","rejoin":"c1"}"#),
            Upward::Register {
                name: "alice".into(),
                resume_token: None,
                rejoin: Some("c1".into()),
                extensions: false,
            }
        );
        assert_eq!(
            decode(r#"{"id":"register","name":"alice","extensions":true}"#),
            Upward::Register {
                name: "alice".into(),
                resume_token: None,
                rejoin: None,
                extensions: true,
            }
        );
        assert_eq!(
            decode(r#"{"id":"negotiate","description":{"type":"offer","sdp":"v=0"}}"#),
            Upward::Negotiate(pb::Negotiate {
                r#type: "offer".into(),
                sdp: "v=0".into(),
                call_id: String::new(),
            })
        );
        for bad in [
            r#"{"id":"negotiate","description":{"type":"pranswer","sdp":"v=0"}}"#,
            r#"{"id":"negotiate","description":{"type":"offer"}}"#,
            r#"{"id":"negotiate"}"#,
        ] {
            assert_eq!(
                ClientMessage::decode(bad).map_err(|e| e.reason()).err(),
                Some(GatewayReason::InvalidMessage),
                "{bad}"
            );
        }
        assert!(matches!(
            decode(r#"{"id":"negotiate","description":{"type":"answer","sdp":" "}}"#),
            Upward::Refuse(ServerMessage::Error {
                reason: "invalid_message",
                ..
            })
        ));
        assert_eq!(
            decode(r#"{"id":"call","from":"mallory","to":"bob","sdpOffer":"o"}"#),
            Upward::Call {
                to: "bob".into(),
                sdp_offer: "o".into(),
                traceparent: None
            },
            "the caller's claimed `from` is dropped"
        );
        assert_eq!(
            decode(
                r#"{"id":"incomingCallResponse","from":"a","callResponse":"reject","message":"bussy"}"#
            ),
            Upward::Answer(pb::Answer {
                from: "a".into(),
                accept: false,
                sdp_answer: String::new()
            })
        );
        let Upward::Refuse(reply) =
            decode(r#"{"id":"incomingCallResponse","from":"a","callResponse":"accept"}"#)
        else {
            panic!("an accept without an answer is refused here");
        };
        assert!(reply.encode().contains("invalid_message"));
        let Upward::Forward(Up::Candidate(candidate)) = decode(
            r#"{"id":"onIceCandidate","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}}"#,
        ) else {
            panic!("a candidate is forwarded");
        };
        assert_eq!(
            candidate.candidate_json,
            r#"{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}"#
        );
        assert_eq!(
            decode(r#"{"id":"stop"}"#),
            Upward::Forward(Up::Stop(pb::Stop {}))
        );
    }

    #[test]
    fn signaling_messages_become_browser_messages() {
        let refused = |request: pb::Request, reason: pb::Reason| {
            Down::Refused(pb::Refused {
                request: request.into(),
                reason: reason.into(),
                message: "m".into(),
            })
        };
        let trace = Some("0af7651916cd43dd8448eb211c80319c".to_owned());
        let Downward::Tell(busy) =
            downward(refused(pb::Request::Call, pb::Reason::Busy), trace.clone())
        else {
            panic!("a call refusal is told");
        };
        assert_eq!(
            busy.encode(),
            r#"{"id":"callResponse","response":"rejected","message":"m","reason":"busy","traceId":"0af7651916cd43dd8448eb211c80319c"}"#
        );
        assert!(matches!(
            downward(refused(pb::Request::Register, pb::Reason::NameTaken), None),
            Downward::RegisterRefused(ServerMessage::RegisterResponse {
                reason: Some("name_taken"),
                ..
            })
        ));
        assert!(matches!(
            downward(refused(pb::Request::Register, pb::Reason::Replaced), None),
            Downward::Replaced(ServerMessage::Error {
                reason: "replaced",
                ..
            })
        ));
        assert!(matches!(
            downward(refused(pb::Request::Candidate, pb::Reason::NotInCall), None),
            Downward::Tell(ServerMessage::Error {
                reason: "not_in_call",
                ..
            })
        ));
        let Downward::Tell(ServerMessage::IceCandidate { candidate }) = downward(
            Down::Candidate(pb::Candidate {
                candidate_json: r#"{"candidate":"c","sdpMid":"0"}"#.into(),
            }),
            None,
        ) else {
            panic!("a candidate is told");
        };
        assert_eq!(
            candidate,
            IceCandidateInit {
                candidate: "c".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: None,
                username_fragment: None
            }
        );
        assert_eq!(
            downward(
                Down::Candidate(pb::Candidate {
                    candidate_json: "not json".into()
                }),
                None
            ),
            Downward::Nothing
        );
        let Downward::Tell(stop) = downward(
            Down::StopCommunication(pb::StopCommunication {
                reason: pb::Reason::HangUp.into(),
                message: "remote user hanged out".into(),
                call_id: "c1".into(),
            }),
            None,
        ) else {
            panic!("a stop is told");
        };
        assert_eq!(
            stop.encode(),
            r#"{"id":"stopCommunication","message":"remote user hanged out","reason":"hang_up","callId":"c1"}"#
        );
    }
}
