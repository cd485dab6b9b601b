//! The words signaling speaks in: who a session is ([`SessionKey`]), what it asks
//! ([`Command`]), what it is told ([`Event`], [`Delivery`]), why something was refused
//! ([`Reason`], [`Request`]), and the limits every replica applies ([`Limits`]). The domain, the
//! store and the gRPC adapter all use these; nothing here knows about any of them.
//! (Over 300 lines: the whole vocabulary in one place, by design.)

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};

use crate::name::Name;

/// Declares an id type shown (and parsed) as 16 hex digits.
macro_rules! hex_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
        )]
        pub struct $name(pub u64);

        impl $name {
            pub fn random() -> Self {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("no OS randomness: {e}"));
                Self(u64::from_le_bytes(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:016x}", self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                u64::from_str_radix(text, 16).map($name)
            }
        }
    };
}

hex_id! {
    /// A gateway instance: chosen at random when it starts, so keys from different gateways
    /// never collide whichever signaling replica they pass through.
    GatewayId
}

hex_id! {
    /// A call, unique across replicas (random).
    CallId
}

/// One browser session: the gateway instance holding its socket, and the gateway's id for it.
/// It does not name a signaling replica: a session keeps its key when its gateway moves it to
/// another replica.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct SessionKey {
    pub gateway: GatewayId,
    pub session: u64,
}

/// Wall-clock milliseconds since the Unix epoch: deadlines every replica reads the same way.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn now() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, by: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

impl std::ops::AddAssign<Duration> for Timestamp {
    fn add_assign(&mut self, by: Duration) {
        *self = *self + by;
    }
}

/// Which side of a call a party is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Caller,
    Callee,
}

/// One party's view of the call it is in: what a resume rejoins, what a gateway asserts again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallState {
    pub id: CallId,
    pub peer: Name,
    pub role: Role,
    /// Answered (no longer ringing).
    pub up: bool,
}

/// What a session asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Register {
        name: String,
        resume_token: Option<String>,
        /// The call the browser still has a peer connection for: a resume rejoins it.
        rejoin: Option<CallId>,
        /// The session's gateway asserts a registration the store forgot: the name is taken
        /// back with `resume_token` itself, with this call.
        reassert: Option<Option<CallState>>,
        /// The page speaks the protocol's extensions (renegotiation).
        extensions: bool,
    },
    Call {
        to: String,
        sdp_offer: String,
        /// The W3C trace context the call travels under; every delivery of the call carries it.
        trace: Option<String>,
    },
    Answer {
        from: String,
        accept: bool,
        sdp_answer: String,
    },
    /// ICE candidates, in the order the session sent them (several when they queued behind
    /// each other: they are relayed together).
    Candidates(Vec<String>),
    /// A new session description for the call, for the other party.
    Negotiate(Description),
    Stop,
    /// The session's socket closed: its call ends, its name is kept for the grace period.
    Closed,
    /// The session's socket went away without closing (a network blip, a gateway moving its
    /// browsers): its name and its call are kept for the grace period, for a resume to rejoin.
    Lost,
}

impl Command {
    /// The request a refusal of this command answers; `None` for what is never answered.
    pub fn request(&self) -> Option<Request> {
        Some(match self {
            Command::Register { .. } => Request::Register,
            Command::Call { .. } => Request::Call,
            Command::Answer { .. } => Request::Answer,
            Command::Candidates(_) => Request::Candidate,
            Command::Negotiate(_) => Request::Negotiate,
            Command::Stop => Request::Stop,
            Command::Closed | Command::Lost => return None,
        })
    }

    /// How many requests this command makes (candidates relayed together are one each).
    pub fn requests(&self) -> usize {
        match self {
            Command::Candidates(candidates) => candidates.len(),
            _ => 1,
        }
    }
}

/// Which request a refusal answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Register,
    Call,
    Answer,
    Candidate,
    Stop,
    Negotiate,
}

/// A session description, as a page renegotiating its call gives it (W3C
/// RTCSessionDescriptionInit): an offer, or the answer to one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    pub kind: DescriptionKind,
    pub sdp: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "offer" => Some(DescriptionKind::Offer),
            "answer" => Some(DescriptionKind::Answer),
            _ => None,
        }
    }
}

/// Declares [`Reason`] once: each variant with the machine-readable name browsers and metrics
/// see. The gRPC enum and the gateway's texts are derived from this list (and tested against it).
macro_rules! reasons {
    ($($variant:ident = $text:literal,)*) => {
        /// Machine-readable reasons, next to every human message.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum Reason {
            $($variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &[Reason] = &[$(Reason::$variant,)*];

            /// The machine-readable name (browser messages, metrics labels).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $text,)*
                }
            }
        }
    };
}

reasons! {
    InvalidName = "invalid_name",
    NameTaken = "name_taken",
    AlreadyRegistered = "already_registered",
    NotRegistered = "not_registered",
    SelfCall = "self_call",
    AlreadyInCall = "already_in_call",
    UserNotFound = "user_not_found",
    Busy = "busy",
    Declined = "declined",
    Timeout = "timeout",
    NoSuchCall = "no_such_call",
    NotInCall = "not_in_call",
    TooManyCandidates = "too_many_candidates",
    HangUp = "hang_up",
    PeerDisconnected = "peer_disconnected",
    Replaced = "replaced",
    Unavailable = "unavailable",
    NotSupported = "not_supported",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a session must be told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Registered {
        name: Name,
        resume_token: String,
        /// The call a resume rejoined.
        call: Option<CallState>,
    },
    Refused {
        request: Request,
        reason: Reason,
        message: String,
    },
    IncomingCall {
        from: Name,
        sdp_offer: String,
        call: CallId,
    },
    CallAccepted {
        sdp_answer: String,
        call: CallId,
        /// How long the call rang: the call setup time.
        rang_for: Duration,
        /// Both pages can renegotiate: the caller is the impolite side.
        #[serde(default)]
        negotiation: bool,
    },
    StartCommunication {
        call: CallId,
        /// Both pages can renegotiate: the callee is the polite side.
        #[serde(default)]
        negotiation: bool,
    },
    Candidate(String),
    /// The other party's new session description.
    Negotiate {
        call: CallId,
        description: Description,
    },
    StopCommunication {
        reason: Reason,
        message: String,
        call: CallId,
    },
}

impl Event {
    /// Roughly what keeping this event costs, for byte bounds on what is held back.
    pub fn weight(&self) -> usize {
        let text = match self {
            Event::Registered { resume_token, .. } => resume_token.len(),
            Event::Refused { message, .. } | Event::StopCommunication { message, .. } => {
                message.len()
            }
            Event::IncomingCall { sdp_offer, .. } => sdp_offer.len(),
            Event::CallAccepted { sdp_answer, .. } => sdp_answer.len(),
            Event::StartCommunication { .. } => 0,
            Event::Candidate(candidate) => candidate.len(),
            Event::Negotiate { description, .. } => description.sdp.len(),
        };
        text + 64
    }
}

/// An event for one session, under the trace of the call it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub to: SessionKey,
    pub event: Event,
    /// The trace context of the call this delivery belongs to.
    pub trace: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a call may ring before the caller is told it timed out.
    pub ring_timeout: Duration,
    /// How long a disconnected session's name stays reserved for its resume token.
    pub resume_grace: Duration,
    /// How many candidates one side may send before the other side can take them.
    pub max_buffered_candidates: usize,
    /// How many bytes of candidates, together.
    pub max_buffered_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ring_timeout: Duration::from_secs(30),
            resume_grace: Duration::from_secs(10),
            max_buffered_candidates: 64,
            max_buffered_bytes: 64 * 1024,
        }
    }
}
