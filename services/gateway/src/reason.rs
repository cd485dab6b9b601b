//! The reasons a browser is given, typed: signaling's (read off the wire, named after it) and the
//! gateway's own.

use stunner_proto::signaling::v1 as pb;

/// Why the gateway itself refused something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatewayReason {
    /// The frame is not JSON.
    InvalidJson,
    /// The frame names no message this protocol has.
    UnknownId,
    /// The frame is JSON with a known id, but not a valid message of it.
    InvalidMessage,
    /// More messages than the session's rate allows.
    RateLimited,
    /// A frame over the size limit.
    TooBig,
    /// No ICE configuration could be had for a registration.
    IceConfigUnavailable,
    /// No stream to signaling to carry the message.
    SignalingUnavailable,
    /// A WebSocket from a page of another site.
    ForeignOrigin,
}

impl GatewayReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayReason::InvalidJson => "invalid_json",
            GatewayReason::UnknownId => "unknown_id",
            GatewayReason::InvalidMessage => "invalid_message",
            GatewayReason::RateLimited => "rate_limited",
            GatewayReason::TooBig => "too_big",
            GatewayReason::IceConfigUnavailable => "ice_config_unavailable",
            GatewayReason::SignalingUnavailable => "signaling_unavailable",
            GatewayReason::ForeignOrigin => "foreign_origin",
        }
    }
}

/// A reason a browser is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Signaling(pb::Reason),
    Gateway(GatewayReason),
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Signaling(reason) => reason.text(),
            Reason::Gateway(reason) => reason.as_str(),
        }
    }
}

impl From<pb::Reason> for Reason {
    fn from(reason: pb::Reason) -> Self {
        Reason::Signaling(reason)
    }
}

impl From<GatewayReason> for Reason {
    fn from(reason: GatewayReason) -> Self {
        Reason::Gateway(reason)
    }
}
