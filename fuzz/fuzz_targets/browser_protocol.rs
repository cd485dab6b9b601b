//! Whatever a browser sends on `/one2one`: decoding never panics, a decoded message always
//! translates (to a request for signaling or a refusal), and an error never quotes more than a
//! bounded part of the input.
#![no_main]

use gateway::{
    protocol::ClientMessage,
    session::translate::{Upward, upward},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientMessage::decode(text) {
        Ok(message) => match upward(message) {
            Upward::Refuse(reply) => assert!(reply.encode().len() < 1024),
            _ => {}
        },
        Err(error) => {
            let _ = error.reason();
            let worded = error.to_string();
            assert!(worded.len() <= 1024, "an error of {} bytes", worded.len());
        }
    }
});
