//! TURN credentials: the TURN REST API scheme (draft-uberti-behave-turn-rest-00) that STUNner's
//! `ephemeral` auth and coturn's `--use-auth-secret` both check.
//!
//! username   = "<unix expiry seconds>:<user id>"
//! credential = base64(HMAC-SHA1(shared secret, username))

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The username of an ephemeral credential valid until `expiry` (unix seconds).
pub fn ephemeral_username(expiry: u64, user_id: &str) -> String {
    format!("{expiry}:{user_id}")
}

/// The password that goes with `username` under `secret`.
pub fn ephemeral_credential(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2202_hmac_sha1_vector() {
        // RFC 2202 test case 2, digest effcdf6a…259a7c79, in base64.
        assert_eq!(
            ephemeral_credential("Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }

    #[test]
    fn turn_rest_vectors() {
        // Cross-checked with Python's hmac module and `openssl dgst -sha1 -hmac`.
        let cases = [
            (
                "my-shared-secret",
                1_700_000_000,
                "alice",
                "/PpC7NTk1N9pUb/wFSH8wwAZNGw=",
            ),
            ("s3cret", 1_433_895_918, "", "3H3NKqPyeo3+pnQkfxwPSYNTs/c="),
            (
                "north",
                4_102_444_800,
                "bob@example.org",
                "2rYgX7TyeZ2TIPBOjqn/4L/nutI=",
            ),
        ];
        for (secret, expiry, user, credential) in cases {
            let username = ephemeral_username(expiry, user);
            assert_eq!(username, format!("{expiry}:{user}"));
            assert_eq!(
                ephemeral_credential(secret, &username),
                credential,
                "{secret} {username}"
            );
        }
    }
}
