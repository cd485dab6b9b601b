//! What the gateway knows of each session from the messages it carries: the name it holds,
//! its resume token and the call it is in, so they can be asserted again if the store forgets
//! them; and positions in the gateway's inbox, to drop duplicates.

use stunner_proto::signaling::v1::{
    self as pb, GatewayMessage, gateway_message::Body as Up, session_message::Body as Down,
};

/// A Redis stream entry id (`<ms>-<seq>`): the order of deliveries in a gateway's inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position(u64, u64);

impl Position {
    /// `None` for no position (a store without an inbox) or one that does not parse.
    pub fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// One session, as seen from the link.
#[derive(Debug, Default)]
pub struct View {
    name: Option<String>,
    token: Option<String>,
    call: Option<pb::CallState>,
    /// Whom the session's last `call` was to, until the call is accepted or refused.
    calling: Option<String>,
    /// The page speaks the protocol's extensions, as it said when it registered.
    extensions: bool,
}

impl View {
    /// The session sent this.
    pub fn sent(&mut self, body: &Up) {
        match body {
            Up::Register(register) => self.extensions = register.extensions,
            Up::Call(call) => self.calling = Some(call.to.clone()),
            Up::Stop(_) | Up::Closed(_) => {
                self.call = None;
                self.calling = None;
            }
            _ => {}
        }
    }

    /// The session is told this.
    pub fn received(&mut self, body: &Down) {
        match body {
            Down::Registered(registered) => {
                self.name = Some(registered.name.clone());
                self.token = Some(registered.resume_token.clone());
                self.call.clone_from(&registered.call);
            }
            Down::Refused(refused) => match refused.request() {
                pb::Request::Register if refused.reason() == pb::Reason::Replaced => {
                    *self = View::default();
                }
                pb::Request::Call => {
                    self.calling = None;
                    if self.call.as_ref().is_some_and(|c| c.caller && !c.up) {
                        self.call = None;
                    }
                }
                _ => {}
            },
            Down::IncomingCall(call) => {
                self.call = Some(pb::CallState {
                    call_id: call.call_id.clone(),
                    peer: call.from.clone(),
                    caller: false,
                    up: false,
                });
            }
            Down::CallAccepted(accepted) => {
                self.call = self.calling.take().map(|peer| pb::CallState {
                    call_id: accepted.call_id.clone(),
                    peer,
                    caller: true,
                    up: true,
                });
            }
            Down::StartCommunication(_) => {
                if let Some(call) = &mut self.call {
                    call.up = true;
                }
            }
            Down::StopCommunication(_) => {
                self.call = None;
                self.calling = None;
            }
            _ => {}
        }
    }

    /// The registration to assert again for `session`, if it holds a name.
    pub fn reassertion(&self, session: u64) -> Option<GatewayMessage> {
        let name = self.name.clone()?;
        Some(GatewayMessage {
            session_id: session,
            body: Some(Up::Register(pb::Register {
                name,
                resume_token: self.token.clone().unwrap_or_default(),
                rejoin_call_id: String::new(),
                reassert: true,
                call: self.call.clone(),
                extensions: self.extensions,
            })),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_like_stream_ids() {
        let a = Position::parse("1700000000000-0").expect("an id");
        let b = Position::parse("1700000000000-1").expect("an id");
        let c = Position::parse("1700000000001-0").expect("an id");
        assert!(a < b && b < c);
        assert_eq!(Position::parse(""), None);
        assert_eq!(a.to_string(), "1700000000000-0");
    }

    #[test]
    fn the_view_follows_registration_and_calls() {
        let mut view = View::default();
        assert!(
            view.reassertion(1).is_none(),
            "nothing to assert before a name"
        );
        view.received(&Down::Registered(pb::Registered {
            name: "alice".into(),
            resume_token: "t".into(),
            call: None,
        }));
        view.sent(&Up::Call(pb::Call {
            to: "bob".into(),
            sdp_offer: "o".into(),
        }));
        view.received(&Down::CallAccepted(pb::CallAccepted {
            sdp_answer: "a".into(),
            call_id: "c1".into(),
            negotiation: None,
        }));
        let Some(GatewayMessage {
            body: Some(Up::Register(register)),
            ..
        }) = view.reassertion(1)
        else {
            panic!("a registration to assert");
        };
        assert_eq!(
            (
                register.name.as_str(),
                register.resume_token.as_str(),
                register.reassert
            ),
            ("alice", "t", true)
        );
        assert_eq!(
            register.call,
            Some(pb::CallState {
                call_id: "c1".into(),
                peer: "bob".into(),
                caller: true,
                up: true
            })
        );
        view.received(&Down::StopCommunication(pb::StopCommunication::default()));
        let Some(GatewayMessage {
            body: Some(Up::Register(register)),
            ..
        }) = view.reassertion(1)
        else {
            panic!("still registered");
        };
        assert_eq!(register.call, None, "the call ended");
    }
}
