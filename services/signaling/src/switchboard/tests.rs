//! The switchboard's specification: each test a scenario of commands and the exact deliveries
//! they cause, over the in-memory directory with the clock in the test's hands.
//! (Over 300 lines: the state machine's whole behaviour, read as one specification.)

use std::{collections::HashMap, time::Duration};

use futures_util::FutureExt;

use super::*;
use crate::{
    directory::MemoryDirectory,
    vocabulary::{CallState, Description, DescriptionKind, Limits},
};

const ALICE: SessionKey = SessionKey {
    gateway: GatewayId(1),
    session: 1,
};
const BOB: SessionKey = SessionKey {
    gateway: GatewayId(1),
    session: 2,
};
const CAROL: SessionKey = SessionKey {
    gateway: GatewayId(2),
    session: 1,
};

/// The switchboard over the in-memory directory, driven as the gateways would: each session's
/// commands name the user its gateway was told it registered as.
struct World {
    board: Switchboard<MemoryDirectory>,
    now: Timestamp,
    tokens: HashMap<SessionKey, String>,
    /// What each session's gateway knows it registered as.
    names: HashMap<SessionKey, Name>,
}

/// The in-memory directory completes every operation at once and never fails.
fn done<T>(future: impl std::future::Future<Output = Result<T>>) -> T {
    future
        .now_or_never()
        .expect("the in-memory directory never waits")
        .expect("the in-memory directory never fails")
}

impl World {
    fn new() -> Self {
        Self {
            board: Switchboard::new(MemoryDirectory::default(), Limits::default()),
            now: Timestamp(1_000_000),
            tokens: HashMap::new(),
            names: HashMap::new(),
        }
    }

    fn send(&mut self, from: SessionKey, command: Command) -> Vec<Delivery> {
        let closed = command == Command::Closed;
        let user = self.names.get(&from).cloned();
        let out = done(self.board.handle(self.now, from, user.as_ref(), command)).deliveries;
        if closed {
            self.names.remove(&from);
        }
        self.learn(&out);
        out
    }

    /// What the gateways learn from deliveries: who registered, who was replaced.
    fn learn(&mut self, out: &[Delivery]) {
        for delivery in out {
            match &delivery.event {
                Event::Registered {
                    name, resume_token, ..
                } => {
                    self.names.insert(delivery.to, name.clone());
                    self.tokens.insert(delivery.to, resume_token.clone());
                }
                Event::Refused {
                    reason: Reason::Replaced,
                    ..
                } => {
                    self.names.remove(&delivery.to);
                }
                _ => {}
            }
        }
    }

    fn counts(&self) -> crate::directory::Counts {
        self.board.directory().counts()
    }

    fn gateway_gone(&mut self, gateway: GatewayId) -> Vec<Delivery> {
        let out = done(self.board.gateway_gone(self.now, gateway)).deliveries;
        self.names.retain(|session, _| session.gateway != gateway);
        out
    }

    fn register(&mut self, who: SessionKey, name: &str) {
        let out = self.send(
            who,
            Command::Register {
                name: name.into(),
                resume_token: None,
                rejoin: None,
                reassert: None,
                extensions: false,
            },
        );
        let [
            Delivery {
                trace: _,
                to,
                event:
                    Event::Registered {
                        name: got,
                        resume_token,
                        call: _,
                    },
            },
        ] = out.as_slice()
        else {
            panic!("{name}: {out:?}");
        };
        assert_eq!((*to, got.as_str()), (who, name));
        self.tokens.insert(who, resume_token.clone());
    }

    fn call(&mut self, from: SessionKey, to: &str) -> Vec<Delivery> {
        self.send(
            from,
            Command::Call {
                to: to.into(),
                sdp_offer: "offer".into(),
                trace: None,
            },
        )
    }

    fn answer(&mut self, callee: SessionKey, caller: &str, accept: bool) -> Vec<Delivery> {
        self.send(
            callee,
            Command::Answer {
                from: caller.into(),
                accept,
                sdp_answer: "answer".into(),
            },
        )
    }

    fn advance(&mut self, by: Duration) -> Vec<Delivery> {
        self.now += by;
        let out = done(self.board.expire(self.now)).deliveries;
        self.learn(&out);
        out
    }

    /// Alice calls Bob and Bob accepts.
    fn in_call(&mut self) -> CallId {
        self.register(ALICE, "alice");
        self.register(BOB, "bob");
        let id = incoming(&self.call(ALICE, "bob"));
        self.answer(BOB, "alice", true);
        id
    }
}

fn refused(to: SessionKey, request: Request, reason: Reason, message: &str) -> Delivery {
    Delivery {
        trace: None,
        to,
        event: Event::Refused {
            request,
            reason,
            message: message.into(),
        },
    }
}

fn stop(to: SessionKey, reason: Reason, message: &str, call: CallId) -> Delivery {
    Delivery {
        trace: None,
        to,
        event: Event::StopCommunication {
            reason,
            message: message.into(),
            call,
        },
    }
}

fn candidate(to: SessionKey, text: &str) -> Delivery {
    Delivery {
        trace: None,
        to,
        event: Event::Candidate(text.into()),
    }
}

fn incoming(out: &[Delivery]) -> CallId {
    match out {
        [
            Delivery {
                trace: _,
                to: BOB,
                event:
                    Event::IncomingCall {
                        from,
                        sdp_offer,
                        call,
                    },
            },
        ] => {
            assert_eq!((from.as_str(), sdp_offer.as_str()), ("alice", "offer"));
            *call
        }
        other => panic!("expected an incomingCall to bob: {other:?}"),
    }
}

#[test]
fn register_validates_and_keeps_names_unique() {
    let mut w = World::new();
    w.register(ALICE, "alice");
    assert_eq!(
        w.send(
            BOB,
            Command::Register {
                name: "alice".into(),
                resume_token: None,
                rejoin: None,
                reassert: None,
                extensions: false,
            }
        ),
        [refused(
            BOB,
            Request::Register,
            Reason::NameTaken,
            "the name alice is taken"
        )]
    );
    assert_eq!(
        w.send(
            BOB,
            Command::Register {
                name: "bad name".into(),
                resume_token: None,
                rejoin: None,
                reassert: None,
                extensions: false,
            }
        ),
        [refused(
            BOB,
            Request::Register,
            Reason::InvalidName,
            "a name may only contain letters, digits and _ - . @ +"
        )]
    );
    assert_eq!(
        w.send(
            ALICE,
            Command::Register {
                name: "alice2".into(),
                resume_token: None,
                rejoin: None,
                reassert: None,
                extensions: false,
            }
        ),
        [refused(
            ALICE,
            Request::Register,
            Reason::AlreadyRegistered,
            "already registered as alice"
        )]
    );
    assert_eq!(w.counts().names, 1, "refusals change nothing");
}

#[test]
fn call_accept_and_hang_up() {
    let mut w = World::new();
    w.register(ALICE, "alice");
    w.register(BOB, "bob");
    let id = incoming(&w.call(ALICE, "bob"));
    assert_eq!(
        w.answer(BOB, "alice", true),
        [
            Delivery {
                trace: None,
                to: ALICE,
                event: Event::CallAccepted {
                    sdp_answer: "answer".into(),
                    call: id,
                    rang_for: Duration::ZERO,
                    negotiation: false,
                }
            },
            Delivery {
                trace: None,
                to: BOB,
                event: Event::StartCommunication {
                    call: id,
                    negotiation: false
                }
            },
        ]
    );
    assert_eq!(
        w.send(ALICE, Command::Candidates(vec!["a1".into()])),
        [candidate(BOB, "a1")]
    );
    assert_eq!(
        w.send(BOB, Command::Candidates(vec!["b1".into()])),
        [candidate(ALICE, "b1")]
    );
    assert_eq!(
        w.advance(Duration::from_secs(60)),
        [],
        "an answered call does not time out"
    );
    assert_eq!(
        w.send(BOB, Command::Stop),
        [stop(ALICE, Reason::HangUp, "remote user hanged out", id)]
    );
    assert_eq!(w.counts().calls, 0);
    assert_eq!(
        w.send(BOB, Command::Stop),
        [refused(
            BOB,
            Request::Stop,
            Reason::NotInCall,
            "not in a call"
        )]
    );
    // Free to call again.
    incoming(&w.call(ALICE, "bob"));
}

#[test]
fn reject() {
    let mut w = World::new();
    w.register(ALICE, "alice");
    w.register(BOB, "bob");
    incoming(&w.call(ALICE, "bob"));
    assert_eq!(
        w.answer(BOB, "alice", false),
        [refused(
            ALICE,
            Request::Call,
            Reason::Declined,
            "user declined"
        )]
    );
    assert_eq!(w.counts().calls, 0);
    assert_eq!(w.board.next_deadline(), None, "the ring timer is gone");
}

#[test]
fn call_refusals() {
    let mut w = World::new();
    assert_eq!(
        w.call(ALICE, "bob"),
        [refused(
            ALICE,
            Request::Call,
            Reason::NotRegistered,
            "register before calling"
        )]
    );
    w.register(ALICE, "alice");
    assert_eq!(
        w.call(ALICE, "alice"),
        [refused(
            ALICE,
            Request::Call,
            Reason::SelfCall,
            "you cannot call yourself"
        )]
    );
    assert_eq!(
        w.call(ALICE, "bob"),
        [refused(
            ALICE,
            Request::Call,
            Reason::UserNotFound,
            "User bob is not registered"
        )]
    );
    assert_eq!(
        w.call(ALICE, "no such name!"),
        [refused(
            ALICE,
            Request::Call,
            Reason::UserNotFound,
            "User no such name! is not registered"
        )]
    );
    w.register(BOB, "bob");
    incoming(&w.call(ALICE, "bob"));
    assert_eq!(
        w.call(ALICE, "bob"),
        [refused(
            ALICE,
            Request::Call,
            Reason::AlreadyInCall,
            "already in a call"
        )]
    );
    // Carol calling busy Bob is answered by the server; Bob hears nothing.
    w.register(CAROL, "carol");
    assert_eq!(
        w.call(CAROL, "bob"),
        [refused(
            CAROL,
            Request::Call,
            Reason::Busy,
            "User bob is busy"
        )]
    );
    assert_eq!(
        w.call(CAROL, "alice"),
        [refused(
            CAROL,
            Request::Call,
            Reason::Busy,
            "User alice is busy"
        )]
    );
    assert_eq!(w.counts().calls, 1);
}

#[test]
fn answers_must_match_a_ringing_call() {
    let mut w = World::new();
    w.register(ALICE, "alice");
    w.register(BOB, "bob");
    let none = |who: &str| format!("there is no incoming call from {who} to answer");
    assert_eq!(
        w.answer(BOB, "alice", true),
        [refused(
            BOB,
            Request::Answer,
            Reason::NoSuchCall,
            &none("alice")
        )]
    );
    incoming(&w.call(ALICE, "bob"));
    assert_eq!(
        w.answer(BOB, "carol", true),
        [refused(
            BOB,
            Request::Answer,
            Reason::NoSuchCall,
            &none("carol")
        )]
    );
    // The caller cannot answer its own call.
    assert_eq!(
        w.answer(ALICE, "alice", true),
        [refused(
            ALICE,
            Request::Answer,
            Reason::NoSuchCall,
            &none("alice")
        )]
    );
    w.answer(BOB, "alice", true);
    assert_eq!(
        w.answer(BOB, "alice", true),
        [refused(
            BOB,
            Request::Answer,
            Reason::NoSuchCall,
            &none("alice")
        )],
        "a second accept"
    );
}

#[test]
fn candidates_relayed_together_arrive_in_order_each_as_its_own_delivery() {
    let mut w = World::new();
    w.register(ALICE, "alice");
    w.register(BOB, "bob");
    let together =
        |texts: &[&str]| Command::Candidates(texts.iter().map(|t| (*t).to_owned()).collect());
    assert_eq!(
        w.send(ALICE, together(&["x", "y"])),
        [
            refused(
                ALICE,
                Request::Candidate,
                Reason::NotInCall,
                "not in a call"
            ),
            refused(
                ALICE,
                Request::Candidate,
                Reason::NotInCall,
                "not in a call"
            ),
        ],
        "one refusal per candidate"
    );
    w.call(ALICE, "bob");
    // While it rings, each is buffered in turn, and flushed in order once answered.
    assert_eq!(w.send(ALICE, together(&["r1", "r2", "r3"])), []);
    let out = w.answer(BOB, "alice", true);
    assert_eq!(
        out[2..],
        [
            candidate(BOB, "r1"),
            candidate(BOB, "r2"),
            candidate(BOB, "r3")
        ]
    );
    // Up: relayed at once, in order, both ways.
    assert_eq!(
        w.send(ALICE, together(&["a1", "a2", "a3"])),
        [
            candidate(BOB, "a1"),
            candidate(BOB, "a2"),
            candidate(BOB, "a3")
        ]
    );
    assert_eq!(
        w.send(BOB, together(&["b1", "b2"])),
        [candidate(ALICE, "b1"), candidate(ALICE, "b2")]
    );
}

#[test]
fn candidates_before_accept_are_buffered_bounded_and_flushed_in_order() {
    let mut w = World::new();
    w.register(ALICE, "alice");
    w.register(BOB, "bob");
    assert_eq!(
        w.send(ALICE, Command::Candidates(vec!["early".into()])),
        [refused(
            ALICE,
            Request::Candidate,
            Reason::NotInCall,
            "not in a call"
        )]
    );
    let id = incoming(&w.call(ALICE, "bob"));
    let max = Limits::default().max_buffered_candidates;
    for n in 0..max {
        assert_eq!(
            w.send(ALICE, Command::Candidates(vec![format!("c{n}")])),
            [],
            "buffered"
        );
    }
    assert_eq!(
        w.send(ALICE, Command::Candidates(vec!["one too many".into()])),
        [refused(
            ALICE,
            Request::Candidate,
            Reason::TooManyCandidates,
            "more than 64 candidates (or 65536 bytes of them) before the call was answered"
        )]
    );
    let out = w.answer(BOB, "alice", true);
    assert_eq!(out.len(), 2 + max);
    assert_eq!(
        out[1],
        Delivery {
            trace: None,
            to: BOB,
            event: Event::StartCommunication {
                call: id,
                negotiation: false
            }
        }
    );
    let flushed: Vec<_> = out[2..].to_vec();
    let expected: Vec<_> = (0..max).map(|n| candidate(BOB, &format!("c{n}"))).collect();
    assert_eq!(flushed, expected);
}

#[test]
fn buffered_candidates_are_bounded_in_bytes() {
    let mut w = World::new();
    w.register(ALICE, "alice");
    w.register(BOB, "bob");
    incoming(&w.call(ALICE, "bob"));
    // Sixteen 4 KiB candidates fill the 64 KiB; the seventeenth does not fit.
    let big = "c".repeat(4096);
    for _ in 0..16 {
        assert_eq!(w.send(ALICE, Command::Candidates(vec![big.clone()])), []);
    }
    assert_eq!(
        w.send(ALICE, Command::Candidates(vec![big.clone()])),
        [refused(
            ALICE,
            Request::Candidate,
            Reason::TooManyCandidates,
            "more than 64 candidates (or 65536 bytes of them) before the call was answered"
        )]
    );
}

#[test]
fn ring_timeout() {
    let mut w = World::new();
    w.register(ALICE, "alice");
    w.register(BOB, "bob");
    let id = incoming(&w.call(ALICE, "bob"));
    assert_eq!(w.advance(Duration::from_secs(29)), []);
    assert_eq!(
        w.advance(Duration::from_secs(1)),
        [
            refused(
                ALICE,
                Request::Call,
                Reason::Timeout,
                "User bob did not answer"
            ),
            stop(
                BOB,
                Reason::Timeout,
                "the call was not answered in time",
                id
            ),
        ]
    );
    assert_eq!(w.counts().calls, 0);
    assert_eq!(
        w.answer(BOB, "alice", true),
        [refused(
            BOB,
            Request::Answer,
            Reason::NoSuchCall,
            "there is no incoming call from alice to answer"
        )]
    );
}

#[test]
fn caller_cancels_while_ringing() {
    let mut w = World::new();
    w.register(ALICE, "alice");
    w.register(BOB, "bob");
    let id = incoming(&w.call(ALICE, "bob"));
    assert_eq!(
        w.send(ALICE, Command::Stop),
        [stop(BOB, Reason::HangUp, "remote user hanged out", id)]
    );
    assert_eq!(
        w.advance(Duration::from_secs(60)),
        [],
        "no timeout for a cancelled call"
    );
}

#[test]
fn disconnect_mid_call_tells_the_other_side_and_reserves_the_name() {
    let mut w = World::new();
    let id = w.in_call();
    assert_eq!(
        w.send(ALICE, Command::Closed),
        [stop(
            BOB,
            Reason::PeerDisconnected,
            "remote user disconnected",
            id
        )]
    );
    assert_eq!(w.counts().sessions, 1);
    // Reserved for the grace period: a stranger cannot take it...
    assert_eq!(
        w.send(
            CAROL,
            Command::Register {
                name: "alice".into(),
                resume_token: None,
                rejoin: None,
                reassert: None,
                extensions: false,
            }
        ),
        [refused(
            CAROL,
            Request::Register,
            Reason::NameTaken,
            "the name alice is taken"
        )]
    );
    // ...and calls to it find nobody.
    assert_eq!(
        w.call(BOB, "alice"),
        [refused(
            BOB,
            Request::Call,
            Reason::UserNotFound,
            "User alice is not registered"
        )]
    );
    w.advance(Duration::from_secs(10));
    w.register(CAROL, "alice");
}

#[test]
fn resume_within_the_grace_period() {
    let mut w = World::new();
    w.register(ALICE, "alice");
    let token = w.tokens[&ALICE].clone();
    w.send(ALICE, Command::Closed);
    let again = SessionKey {
        gateway: GatewayId(3),
        session: 9,
    };
    assert_eq!(
        w.send(
            again,
            Command::Register {
                name: "alice".into(),
                resume_token: Some("forged".into()),
                rejoin: None,
                reassert: None,
                extensions: false,
            }
        ),
        [refused(
            again,
            Request::Register,
            Reason::NameTaken,
            "the name alice is taken"
        )]
    );
    let out = w.send(
        again,
        Command::Register {
            name: "alice".into(),
            resume_token: Some(token.clone()),
            rejoin: None,
            reassert: None,
            extensions: false,
        },
    );
    // Resumed, with a fresh token.
    let [
        Delivery {
            trace: None,
            to,
            event:
                Event::Registered {
                    name,
                    resume_token,
                    call: None,
                },
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}");
    };
    assert_eq!((*to, name.as_str()), (again, "alice"));
    assert_eq!(resume_token.len(), 32);
    assert_ne!(*resume_token, token);
    // The grace period ending does not free a resumed name; calls reach the new session.
    w.advance(Duration::from_secs(60));
    w.register(BOB, "bob");
    let out = w.call(BOB, "alice");
    assert!(
        matches!(out.as_slice(), [Delivery { trace: _, to, event: Event::IncomingCall { .. } }] if *to == again),
        "{out:?}"
    );
}

#[test]
fn a_reload_displaces_the_old_session() {
    let mut w = World::new();
    let id = w.in_call();
    let token = w.tokens[&ALICE].clone();
    let reload = SessionKey {
        gateway: GatewayId(1),
        session: 7,
    };
    let out = w.send(
        reload,
        Command::Register {
            name: "alice".into(),
            resume_token: Some(token.clone()),
            rejoin: None,
            reassert: None,
            extensions: false,
        },
    );
    assert_eq!(
        out,
        [
            stop(
                BOB,
                Reason::PeerDisconnected,
                "remote user disconnected",
                id
            ),
            refused(
                ALICE,
                Request::Register,
                Reason::Replaced,
                "alice signed in elsewhere"
            ),
            Delivery {
                trace: None,
                to: reload,
                event: Event::Registered {
                    name: Name::parse("alice").expect("valid"),
                    // A fresh one: every resume rotates the token.
                    resume_token: w.tokens[&reload].clone(),
                    call: None,
                }
            },
        ]
    );
    // The old session closing later does not take the name away.
    assert_eq!(w.send(ALICE, Command::Closed), []);
    w.advance(Duration::from_secs(60));
    assert_eq!(
        w.send(
            CAROL,
            Command::Register {
                name: "alice".into(),
                resume_token: None,
                rejoin: None,
                reassert: None,
                extensions: false,
            }
        ),
        [refused(
            CAROL,
            Request::Register,
            Reason::NameTaken,
            "the name alice is taken"
        )]
    );
}

/// Carol (gateway 2) calls Alice (gateway 1), who accepts.
fn carol_calls_alice(w: &mut World) -> CallId {
    w.register(ALICE, "alice");
    w.register(CAROL, "carol");
    w.register(BOB, "bob");
    let out = w.call(CAROL, "alice");
    let [
        Delivery {
            event: Event::IncomingCall { call: id, .. },
            ..
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}");
    };
    let id = *id;
    w.answer(ALICE, "carol", true);
    id
}

#[test]
fn a_gateway_going_away_keeps_its_calls_for_a_resume_to_rejoin() {
    let mut w = World::new();
    let id = carol_calls_alice(&mut w);
    let token = w.tokens[&ALICE].clone();
    assert_eq!(
        w.gateway_gone(GatewayId(1)),
        [],
        "Carol is not told: Alice's browser is reconnecting elsewhere"
    );
    assert_eq!(w.counts().sessions, 1);
    assert_eq!(w.counts().calls, 1, "the call goes on");
    // What Carol sends meanwhile is kept for Alice.
    assert_eq!(w.send(CAROL, Command::Candidates(vec!["c1".into()])), []);
    // Alice's page reconnects through another gateway and rejoins the call it still has.
    let again = SessionKey {
        gateway: GatewayId(3),
        session: 1,
    };
    let out = w.send(
        again,
        Command::Register {
            name: "alice".into(),
            resume_token: Some(token.clone()),
            rejoin: Some(id),
            reassert: None,
            extensions: false,
        },
    );
    assert_eq!(
        out,
        [
            Delivery {
                trace: None,
                to: again,
                event: Event::Registered {
                    name: Name::parse("alice").expect("valid"),
                    resume_token: w.tokens[&again].clone(),
                    call: Some(CallState {
                        id,
                        peer: Name::parse("carol").expect("valid"),
                        role: crate::vocabulary::Role::Callee,
                        up: true,
                    }),
                },
            },
            candidate(again, "c1"),
        ]
    );
    assert_eq!(
        w.send(CAROL, Command::Candidates(vec!["c2".into()])),
        [candidate(again, "c2")]
    );
    assert_eq!(
        w.send(again, Command::Stop),
        [stop(CAROL, Reason::HangUp, "remote user hanged out", id)],
        "a hang-up after the reconnect reaches the other side"
    );
    // Bob, on the same gateway, never came back: his name is free once his grace is over.
    w.advance(Duration::from_secs(10));
    w.register(
        SessionKey {
            gateway: GatewayId(3),
            session: 2,
        },
        "bob",
    );
}

#[test]
fn a_call_ends_when_its_lost_party_does_not_come_back() {
    let mut w = World::new();
    let id = carol_calls_alice(&mut w);
    assert_eq!(w.gateway_gone(GatewayId(1)), []);
    assert_eq!(w.advance(Duration::from_secs(9)), []);
    assert_eq!(
        w.advance(Duration::from_secs(1)),
        [stop(
            CAROL,
            Reason::PeerDisconnected,
            "remote user disconnected",
            id
        )]
    );
    assert_eq!(w.counts().calls, 0);
}

#[test]
fn a_resume_that_does_not_rejoin_ends_the_call() {
    // A page reloaded after a blip has no peer connection: its old call ends.
    let mut w = World::new();
    let id = carol_calls_alice(&mut w);
    let token = w.tokens[&ALICE].clone();
    assert_eq!(w.send(ALICE, Command::Lost), []);
    let again = SessionKey {
        gateway: GatewayId(3),
        session: 1,
    };
    let out = w.send(
        again,
        Command::Register {
            name: "alice".into(),
            resume_token: Some(token),
            rejoin: None,
            reassert: None,
            extensions: false,
        },
    );
    assert_eq!(
        out[0],
        stop(
            CAROL,
            Reason::PeerDisconnected,
            "remote user disconnected",
            id
        )
    );
    assert!(matches!(out[1].event, Event::Registered { call: None, .. }));
}

#[test]
fn names_and_calls_asserted_again_after_the_store_forgot_them() {
    // The store lost everything (a Redis restarted empty): each gateway asserts its sessions'
    // names, tokens and calls again; a stranger who took a name meanwhile keeps it.
    let mut w = World::new();
    let id = carol_calls_alice(&mut w);
    let (alice_token, carol_token) = (w.tokens[&ALICE].clone(), w.tokens[&CAROL].clone());
    w.board = Switchboard::new(MemoryDirectory::default(), Limits::default());
    let stranger = SessionKey {
        gateway: GatewayId(9),
        session: 1,
    };
    w.register(stranger, "bob");
    let reassert = |name: &str, token: &str, call: Option<CallState>| Command::Register {
        name: name.into(),
        resume_token: Some(token.into()),
        rejoin: None,
        reassert: Some(call),
        extensions: false,
    };
    let carol = Name::parse("carol").expect("valid");
    let alice = Name::parse("alice").expect("valid");
    let leg = |peer: &Name, role| CallState {
        id,
        peer: peer.clone(),
        role,
        up: true,
    };
    let out = w.send(
        ALICE,
        reassert(
            "alice",
            &alice_token,
            Some(leg(&carol, crate::vocabulary::Role::Callee)),
        ),
    );
    assert!(
        matches!(&out[..], [Delivery { event: Event::Registered { resume_token, call: Some(_), .. }, .. }] if *resume_token == alice_token),
        "{out:?}"
    );
    w.send(
        CAROL,
        reassert(
            "carol",
            &carol_token,
            Some(leg(&alice, crate::vocabulary::Role::Caller)),
        ),
    );
    let bob_token = w.tokens[&BOB].clone();
    assert_eq!(
        w.send(BOB, reassert("bob", &bob_token, None)),
        [refused(
            BOB,
            Request::Register,
            Reason::Replaced,
            "bob was taken by someone else while signaling was away"
        )],
        "the stranger who registered in between keeps the name; the loser is told"
    );
    // The call carries on, and ends, as before.
    assert_eq!(
        w.send(CAROL, Command::Candidates(vec!["c".into()])),
        [candidate(ALICE, "c")]
    );
    assert_eq!(
        w.send(ALICE, Command::Stop),
        [stop(CAROL, Reason::HangUp, "remote user hanged out", id)]
    );
}

#[test]
fn every_delivery_of_a_call_carries_its_trace() {
    let mut w = World::new();
    w.register(ALICE, "alice");
    w.register(BOB, "bob");
    w.register(CAROL, "carol");
    let trace = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned());
    let call = |to: &str| Command::Call {
        to: to.into(),
        sdp_offer: "o".into(),
        trace: trace.clone(),
    };
    let traces = |out: &[Delivery]| out.iter().map(|d| d.trace.clone()).collect::<Vec<_>>();

    assert_eq!(
        traces(&w.send(ALICE, call("bob"))),
        vec![trace.clone()],
        "incomingCall"
    );
    assert_eq!(
        traces(&w.send(ALICE, Command::Candidates(vec!["c".into()]))),
        [],
        "buffered"
    );
    assert_eq!(
        traces(&w.send(CAROL, call("bob"))),
        vec![trace.clone()],
        "a busy refusal"
    );
    assert_eq!(
        traces(&w.answer(BOB, "alice", true)),
        vec![trace.clone(); 3],
        "accepted, start, flushed candidate"
    );
    assert_eq!(
        traces(&w.send(BOB, Command::Candidates(vec!["b".into()]))),
        vec![trace.clone()]
    );
    assert_eq!(
        traces(&w.send(ALICE, Command::Stop)),
        vec![trace.clone()],
        "stopCommunication"
    );
    let out = w.send(
        ALICE,
        Command::Register {
            name: "x".into(),
            resume_token: None,
            rejoin: None,
            reassert: None,
            extensions: false,
        },
    );
    assert_eq!(traces(&out), [None], "outside a call, no trace");
}

#[test]
fn a_leftover_grace_timer_does_not_free_a_resumed_name() {
    // Register, close, resume at 2 s, close again at 8 s: the first disconnect's timer (due at
    // 10 s) must not free the name, whose second grace period runs to 18 s.
    let mut w = World::new();
    w.register(ALICE, "alice");
    let token = w.tokens[&ALICE].clone();
    let register = |token: Option<&str>| Command::Register {
        name: "alice".into(),
        resume_token: token.map(str::to_owned),
        rejoin: None,
        reassert: None,
        extensions: false,
    };
    w.send(ALICE, Command::Closed);
    w.advance(Duration::from_secs(2));
    let again = SessionKey {
        gateway: GatewayId(3),
        session: 9,
    };
    let out = w.send(again, register(Some(&token)));
    assert!(
        matches!(
            out.as_slice(),
            [Delivery {
                event: Event::Registered { .. },
                ..
            }]
        ),
        "{out:?}"
    );
    w.advance(Duration::from_secs(6));
    w.send(again, Command::Closed);
    w.advance(Duration::from_millis(2_600));
    assert_eq!(
        w.send(CAROL, register(None)),
        [refused(
            CAROL,
            Request::Register,
            Reason::NameTaken,
            "the name alice is taken"
        )],
        "at 10.6 s the name is still held for its owner"
    );
    w.advance(Duration::from_millis(2_400));
    let back = SessionKey {
        gateway: GatewayId(3),
        session: 10,
    };
    // The token the resume was given (each resume rotates it).
    let token = w.tokens[&again].clone();
    let out = w.send(back, register(Some(&token)));
    assert!(
        matches!(
            out.as_slice(),
            [Delivery {
                event: Event::Registered { .. },
                ..
            }]
        ),
        "at 13 s the owner's token still works: {out:?}"
    );
}

fn register_with_extensions(w: &mut World, who: SessionKey, name: &str) {
    let out = w.send(
        who,
        Command::Register {
            name: name.into(),
            resume_token: None,
            rejoin: None,
            reassert: None,
            extensions: true,
        },
    );
    assert!(
        matches!(
            out.as_slice(),
            [Delivery {
                event: Event::Registered { .. },
                ..
            }]
        ),
        "{out:?}"
    );
}

fn offer(sdp: &str) -> Command {
    Command::Negotiate(Description {
        kind: DescriptionKind::Offer,
        sdp: sdp.into(),
    })
}

#[test]
fn pages_that_can_renegotiate_relay_descriptions_within_their_call() {
    let mut w = World::new();
    register_with_extensions(&mut w, ALICE, "alice");
    register_with_extensions(&mut w, BOB, "bob");
    // Not before the call is up: ringing, the callee has no peer connection yet.
    let id = incoming(&w.call(ALICE, "bob"));
    let not_up = refused(
        ALICE,
        Request::Negotiate,
        Reason::NotInCall,
        "not in a call that is up",
    );
    assert_eq!(w.send(ALICE, offer("v=0 restart")), [not_up]);
    let out = w.answer(BOB, "alice", true);
    // Both are told they may renegotiate (the caller impolite, the callee polite, on the wire).
    assert!(
        out.iter().any(|d| matches!(
            d.event,
            Event::CallAccepted {
                negotiation: true,
                ..
            }
        )),
        "{out:?}"
    );
    assert!(
        out.iter().any(|d| matches!(
            d.event,
            Event::StartCommunication {
                negotiation: true,
                ..
            }
        )),
        "{out:?}"
    );
    let relayed = |to, kind, sdp: &str| Delivery {
        trace: None,
        to,
        event: Event::Negotiate {
            call: id,
            description: Description {
                kind,
                sdp: sdp.into(),
            },
        },
    };
    assert_eq!(
        w.send(ALICE, offer("v=0 restart")),
        [relayed(BOB, DescriptionKind::Offer, "v=0 restart")]
    );
    let answer = Command::Negotiate(Description {
        kind: DescriptionKind::Answer,
        sdp: "v=0 answer".into(),
    });
    assert_eq!(
        w.send(BOB, answer),
        [relayed(ALICE, DescriptionKind::Answer, "v=0 answer")]
    );
    // A stranger, and a description with no sdp, are refused; the call goes on.
    w.register(CAROL, "carol");
    assert_eq!(
        w.send(CAROL, offer("v=0")),
        [refused(
            CAROL,
            Request::Negotiate,
            Reason::NotInCall,
            "not in a call that is up"
        )]
    );
    assert_eq!(
        w.send(ALICE, offer("")),
        [refused(
            ALICE,
            Request::Negotiate,
            Reason::NotSupported,
            "a description needs a type (offer or answer) and an sdp"
        )]
    );
    assert_eq!(
        w.send(BOB, offer("v=0 again")),
        [relayed(ALICE, DescriptionKind::Offer, "v=0 again")]
    );
}

#[test]
fn a_page_that_cannot_renegotiate_is_never_sent_a_description() {
    let mut w = World::new();
    register_with_extensions(&mut w, ALICE, "alice");
    // Bob's page is the tutorial's.
    w.register(BOB, "bob");
    incoming(&w.call(ALICE, "bob"));
    let out = w.answer(BOB, "alice", true);
    assert!(
        out.iter().all(|d| !matches!(
            d.event,
            Event::CallAccepted {
                negotiation: true,
                ..
            } | Event::StartCommunication {
                negotiation: true,
                ..
            }
        )),
        "{out:?}"
    );
    assert_eq!(
        w.send(ALICE, offer("v=0")),
        [refused(
            ALICE,
            Request::Negotiate,
            Reason::NotSupported,
            "bob's page cannot renegotiate the call"
        )]
    );
}

/// The caller's leg once it is placed, and the callee's once it answers, are kept for the
/// candidates that follow (no read of their own records); a refused call keeps none.
#[test]
fn a_session_keeps_the_leg_it_just_wrote_for_its_candidates() {
    let mut w = World::new();
    w.register(ALICE, "alice");
    w.register(BOB, "bob");
    w.register(CAROL, "carol");
    w.call(ALICE, "bob");
    let caller = w.board.cached_leg(ALICE).expect("the caller's leg");
    assert_eq!((caller.peer.as_str(), caller.role), ("bob", Role::Caller));
    w.answer(BOB, "alice", true);
    let callee = w.board.cached_leg(BOB).expect("the callee's leg");
    assert_eq!(
        (callee.peer.as_str(), callee.role, callee.id),
        ("alice", Role::Callee, caller.id)
    );
    assert_eq!(callee.ringing_until, None, "the call is up");
    assert_eq!(
        w.call(CAROL, "bob"),
        [refused(
            CAROL,
            Request::Call,
            Reason::Busy,
            "User bob is busy"
        )]
    );
    assert!(
        w.board.cached_leg(CAROL).is_none(),
        "a refused call keeps no leg"
    );
    // The kept legs carry candidates straight through, both ways.
    let to_bob = w.send(ALICE, Command::Candidates(vec!["a1".into()]));
    assert_eq!(to_bob, [candidate(BOB, "a1")]);
    let to_alice = w.send(BOB, Command::Candidates(vec!["b1".into()]));
    assert_eq!(to_alice, [candidate(ALICE, "b1")]);
}
