//! The browser protocol of STUNner's one-to-one call tutorial, as typed messages: one JSON text
//! frame per message, `id` naming it. Names and fields are kept so the tutorial's page works
//! unchanged; the extensions (reasons, resume token, credential refresh, trace id) are optional
//! fields and message ids old pages ignore.

use serde::{Deserialize, Serialize};

use crate::reason::GatewayReason;

/// Browser → server.
#[derive(Debug, Deserialize)]
#[serde(tag = "id", rename_all = "camelCase")]
pub enum ClientMessage {
    #[serde(rename_all = "camelCase")]
    Register {
        name: String,
        #[serde(default)]
        resume_token: Option<String>,
        /// The call the page still has a peer connection for (after a reconnect): rejoined
        /// rather than ended.
        #[serde(default)]
        rejoin: Option<String>,
        /// The page speaks the extensions (renegotiation, restart reports).
        #[serde(default)]
        extensions: bool,
    },
    /// `from` is the caller's claim; the server ignores it and uses the registered name.
    #[serde(rename_all = "camelCase")]
    Call {
        to: String,
        sdp_offer: String,
        /// W3C trace context from the page, continued by the server.
        #[serde(default)]
        traceparent: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    IncomingCallResponse {
        from: String,
        call_response: CallResponse,
        #[serde(default)]
        sdp_answer: Option<String>,
    },
    OnIceCandidate {
        candidate: IceCandidateInit,
    },
    Stop,
    /// Extension: a new session description for the call (an ICE restart), for the peer.
    Negotiate {
        description: SessionDescription,
    },
    /// Extension: how an ICE restart the page made went, for metrics and the call's trace.
    #[serde(rename_all = "camelCase")]
    IceRestarted {
        cause: RestartCause,
        outcome: RestartOutcome,
        duration_ms: u64,
    },
}

/// An RTCSessionDescriptionInit of a renegotiation: an offer or the answer to one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionDescription {
    #[serde(rename = "type")]
    pub kind: DescriptionKind,
    pub sdp: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DescriptionKind {
    Offer,
    Answer,
}

impl DescriptionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DescriptionKind::Offer => "offer",
            DescriptionKind::Answer => "answer",
        }
    }
}

/// Why a page restarted ICE.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RestartCause {
    /// Its TURN credentials were about to expire.
    Credentials,
    /// The media path failed.
    Failure,
    /// The network changed.
    Network,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RestartOutcome {
    Recovered,
    Failed,
}

impl RestartCause {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartCause::Credentials => "credentials",
            RestartCause::Failure => "failure",
            RestartCause::Network => "network",
        }
    }
}

impl RestartOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartOutcome::Recovered => "recovered",
            RestartOutcome::Failed => "failed",
        }
    }
}

/// The ids of [`ClientMessage`], to tell an unknown id from a malformed message of a known one.
/// [`ClientMessage::id`] matches every message exhaustively, so a new message cannot be added
/// without its id.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ClientId {
    Register,
    Call,
    IncomingCallResponse,
    OnIceCandidate,
    Stop,
    Negotiate,
    IceRestarted,
}

impl ClientMessage {
    pub fn id(&self) -> ClientId {
        match self {
            ClientMessage::Register { .. } => ClientId::Register,
            ClientMessage::Call { .. } => ClientId::Call,
            ClientMessage::IncomingCallResponse { .. } => ClientId::IncomingCallResponse,
            ClientMessage::OnIceCandidate { .. } => ClientId::OnIceCandidate,
            ClientMessage::Stop => ClientId::Stop,
            ClientMessage::Negotiate { .. } => ClientId::Negotiate,
            ClientMessage::IceRestarted { .. } => ClientId::IceRestarted,
        }
    }
}

/// An RTCIceCandidateInit, as browsers send it (`null` where a field is unknown).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidateInit {
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CallResponse {
    Accept,
    Reject,
}

/// Server → browser.
#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "id", rename_all = "camelCase")]
pub enum ServerMessage {
    #[serde(rename_all = "camelCase")]
    RegisterResponse {
        response: Verdict,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ice_configuration: Option<IceConfiguration>,
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
        /// The call a resume rejoined.
        #[serde(skip_serializing_if = "Option::is_none")]
        call: Option<CallInfo>,
    },
    #[serde(rename_all = "camelCase")]
    IncomingCall {
        from: String,
        sdp_offer: String,
        call_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    CallResponse {
        response: Verdict,
        #[serde(skip_serializing_if = "Option::is_none")]
        sdp_answer: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
        /// Extension: both pages can renegotiate the call.
        #[serde(skip_serializing_if = "Option::is_none")]
        negotiation: Option<Negotiation>,
    },
    #[serde(rename_all = "camelCase")]
    StartCommunication {
        call_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
        /// Extension: both pages can renegotiate the call.
        #[serde(skip_serializing_if = "Option::is_none")]
        negotiation: Option<Negotiation>,
    },
    /// Extension: the other party's new session description.
    #[serde(rename_all = "camelCase")]
    Negotiate {
        description: SessionDescription,
        call_id: String,
    },
    IceCandidate {
        candidate: IceCandidateInit,
    },
    #[serde(rename_all = "camelCase")]
    StopCommunication {
        message: String,
        reason: &'static str,
        call_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
    },
    /// Fresh credentials before the current ones expire: apply with `setConfiguration`.
    #[serde(rename_all = "camelCase")]
    IceConfiguration {
        ice_configuration: IceConfiguration,
    },
    Error {
        message: String,
        reason: &'static str,
    },
    /// This gateway is going away: connect again (to whichever gateway answers), resume the
    /// name and rejoin the call.
    Reconnect {
        message: String,
    },
}

/// Which protocol a page speaks. The tutorial's page understands its six replies and nothing
/// else (anything more it logs as "Unrecognized message"); a page says it speaks the
/// extensions when it registers (`register.extensions`). Until a page registers, everything is
/// sent: the tutorial's page registers first, and a developer's client wants the errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    #[default]
    Undeclared,
    /// The tutorial's: `error`, `iceConfiguration` pushes, `negotiate` and `reconnect` are
    /// never sent (what the page cannot act on is dropped, as the tutorial's server ignored it).
    Tutorial,
    Extended,
}

impl Dialect {
    /// The dialect a `register` declares.
    pub fn declared(extensions: bool) -> Self {
        if extensions {
            Dialect::Extended
        } else {
            Dialect::Tutorial
        }
    }

    /// Whether a page of this dialect understands `message`.
    pub fn understands(self, message: &ServerMessage) -> bool {
        self != Dialect::Tutorial
            || !matches!(
                message,
                ServerMessage::Error { .. }
                    | ServerMessage::IceConfiguration { .. }
                    | ServerMessage::Negotiate { .. }
                    | ServerMessage::Reconnect { .. }
            )
    }
}

/// Which side gives way when both pages offer at once (perfect negotiation): the callee is
/// polite, the caller is not.
#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
pub struct Negotiation {
    pub polite: bool,
}

/// A call, as a page rejoining it learns it.
#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CallInfo {
    pub call_id: String,
    pub peer: String,
    /// `caller` or `callee`.
    pub role: &'static str,
}

#[derive(Debug, Serialize, PartialEq, Eq, Clone, Copy)]
pub enum Verdict {
    #[serde(rename = "accepted")]
    Accepted,
    #[serde(rename = "rejected")]
    Rejected,
}

/// An RTCConfiguration subset.
#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IceConfiguration {
    pub ice_servers: Vec<IceServer>,
    pub ice_transport_policy: &'static str,
}

#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub credential: String,
}

/// Why a frame could not be understood; each a reason for an `error` reply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("unknown message id {0:?}")]
    UnknownId(String),
    #[error("invalid {id} message: {detail}")]
    Invalid { id: String, detail: String },
    #[error("a message needs a string `id`")]
    MissingId,
}

impl DecodeError {
    pub fn reason(&self) -> GatewayReason {
        match self {
            DecodeError::Json(_) => GatewayReason::InvalidJson,
            DecodeError::UnknownId(_) => GatewayReason::UnknownId,
            DecodeError::Invalid { .. } | DecodeError::MissingId => GatewayReason::InvalidMessage,
        }
    }
}

/// The id of a message, read without decoding the rest (for error messages only).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

impl ClientMessage {
    /// Decodes one text frame. The common case is a single pass; the envelope is only read
    /// again to word an error.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        serde_json::from_str(text).map_err(|error| {
            let envelope = match serde_json::from_str::<Envelope<'_>>(text) {
                Ok(envelope) => envelope,
                Err(_) if error.is_syntax() || error.is_eof() => {
                    return DecodeError::Json(error.to_string());
                }
                Err(_) => return DecodeError::MissingId,
            };
            let Some(id) = envelope.id else {
                return DecodeError::MissingId;
            };
            let known = ClientId::deserialize(serde::de::value::StrDeserializer::<
                serde::de::value::Error,
            >::new(&id))
            .is_ok();
            if known {
                // serde quotes the offending value ("unknown variant `…`"): only its start.
                DecodeError::Invalid {
                    id: id.into_owned(),
                    detail: quoted_detail(&error.to_string()),
                }
            } else {
                DecodeError::UnknownId(quoted(&id))
            }
        })
    }
}

/// The longest part of a client's text an error quotes back.
const MAX_QUOTE: usize = 32;

/// The start of `text`, for an error message: a reply never grows with what a client sent.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTE) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// The longest error detail returned.
const MAX_DETAIL: usize = 160;

fn quoted_detail(detail: &str) -> String {
    match detail.char_indices().nth(MAX_DETAIL) {
        None => detail.to_owned(),
        Some((end, _)) => format!("{}…", &detail[..end]),
    }
}

impl ServerMessage {
    pub fn encode(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys, no foreign impls.
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("{e}"))
    }
}

#[cfg(test)]
mod tests;
