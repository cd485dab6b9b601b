//! Redis replies (RESP2, what a connection that never says `HELLO 3` is answered in), read
//! straight from the socket's buffer: a scan that only measures whether a whole reply is there,
//! then one pass that builds it. Error replies are handed to redis-rs' own parser, so they keep
//! its error kinds (`NOSCRIPT`, `BUSY`…) for the code that checks them.

use redis::{ErrorKind, RedisError, RedisResult, Value};

/// Nesting deeper than any reply this service asks for is taken for a broken stream.
const MAX_DEPTH: usize = 32;
/// Redis' own limit on one string (`proto-max-bulk-len`).
const MAX_BULK: usize = 512 * 1024 * 1024;

/// The reply at the start of `buffer` and the bytes it takes, or `None` while it is incomplete.
pub fn parse(buffer: &[u8]) -> RedisResult<Option<(Value, usize)>> {
    let Some(end) = scan(buffer, 0, 0)? else {
        return Ok(None);
    };
    let (value, at) = build(buffer, 0)?;
    debug_assert_eq!(at, end);
    Ok(Some((value, end)))
}

/// Where the reply starting at `at` ends, if all of it is there.
fn scan(buffer: &[u8], at: usize, depth: usize) -> RedisResult<Option<usize>> {
    if depth > MAX_DEPTH {
        return Err(broken("replies nested too deep"));
    }
    let Some((kind, line, next)) = header(buffer, at)? else {
        return Ok(None);
    };
    match kind {
        b'+' | b'-' | b':' => Ok(Some(next)),
        b'$' => match length(line)? {
            None => Ok(Some(next)),
            Some(len) => {
                let end = next + len + 2;
                if buffer.len() < end {
                    return Ok(None);
                }
                if &buffer[end - 2..end] != b"\r\n" {
                    return Err(broken("a string not followed by CRLF"));
                }
                Ok(Some(end))
            }
        },
        b'*' => {
            let mut at = next;
            for _ in 0..length(line)?.unwrap_or(0) {
                match scan(buffer, at, depth + 1)? {
                    Some(end) => at = end,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(broken(&format!(
            "unexpected reply type {:?}",
            char::from(other)
        ))),
    }
}

/// The reply starting at `at`, known to be complete, and where it ends.
fn build(buffer: &[u8], at: usize) -> RedisResult<(Value, usize)> {
    let Some((kind, line, next)) = header(buffer, at)? else {
        return Err(broken("a reply ended early"));
    };
    let value = match kind {
        b'+' if line == b"OK" => Value::Okay,
        b'+' => Value::SimpleString(text(line)?.to_owned()),
        b'-' => redis::parse_redis_value(&buffer[at..next])?,
        b':' => Value::Int(
            text(line)?
                .parse()
                .map_err(|_| broken("an integer that does not parse"))?,
        ),
        b'$' => match length(line)? {
            None => Value::Nil,
            Some(len) => {
                return Ok((
                    Value::BulkString(buffer[next..next + len].to_vec()),
                    next + len + 2,
                ));
            }
        },
        b'*' => match length(line)? {
            None => Value::Nil,
            Some(count) => {
                let mut items = Vec::with_capacity(count);
                let mut at = next;
                for _ in 0..count {
                    let (item, end) = build(buffer, at)?;
                    items.push(item);
                    at = end;
                }
                return Ok((Value::Array(items), at));
            }
        },
        _ => return Err(broken("unexpected reply type")),
    };
    Ok((value, next))
}

/// The type byte at `at`, the rest of its line, and where the next line starts.
fn header(buffer: &[u8], at: usize) -> RedisResult<Option<(u8, &[u8], usize)>> {
    let Some(&kind) = buffer.get(at) else {
        return Ok(None);
    };
    let rest = &buffer[at + 1..];
    let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
        return Ok(None);
    };
    match rest.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((kind, &rest[..cr], at + 1 + cr + 2))),
        Some(_) => Err(broken("a CR not followed by LF")),
    }
}

/// A string's or an array's length; `None` for `-1` (nil).
fn length(line: &[u8]) -> RedisResult<Option<usize>> {
    if line == b"-1" {
        return Ok(None);
    }
    let len: usize = text(line)?
        .parse()
        .map_err(|_| broken("a length that does not parse"))?;
    if len > MAX_BULK {
        return Err(broken("a length past Redis' own limit"));
    }
    Ok(Some(len))
}

fn text(line: &[u8]) -> RedisResult<&str> {
    std::str::from_utf8(line).map_err(|_| broken("a line that is not UTF-8"))
}

fn broken(what: &str) -> RedisError {
    RedisError::from((
        ErrorKind::Parse,
        "unreadable reply from Redis",
        what.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> Value {
        let (value, used) = parse(bytes).expect("parses").expect("complete");
        assert_eq!(used, bytes.len());
        value
    }

    #[test]
    fn every_reply_type_redis_answers_in() {
        assert_eq!(whole(b"+OK\r\n"), Value::Okay);
        assert_eq!(whole(b"+PONG\r\n"), Value::SimpleString("PONG".into()));
        assert_eq!(whole(b":-42\r\n"), Value::Int(-42));
        assert_eq!(
            whole(b"$3\r\na\r\n\r\n"),
            Value::BulkString(b"a\r\n".to_vec())
        );
        assert_eq!(whole(b"$0\r\n\r\n"), Value::BulkString(Vec::new()));
        assert_eq!(whole(b"$-1\r\n"), Value::Nil);
        assert_eq!(whole(b"*-1\r\n"), Value::Nil);
        assert_eq!(whole(b"*0\r\n"), Value::Array(Vec::new()));
        assert_eq!(
            whole(b"*2\r\n*2\r\n$5\r\n1-0\r\n\r\n*2\r\n$1\r\nm\r\n$-1\r\n:7\r\n"),
            Value::Array(vec![
                Value::Array(vec![
                    Value::BulkString(b"1-0\r\n".to_vec()),
                    Value::Array(vec![Value::BulkString(b"m".to_vec()), Value::Nil]),
                ]),
                Value::Int(7),
            ])
        );
    }

    #[test]
    fn error_replies_keep_redis_rs_error_kinds() {
        let Value::ServerError(error) = whole(b"-NOSCRIPT No matching script.\r\n") else {
            panic!("an error reply is a server error");
        };
        let error = RedisError::from(error);
        assert_eq!(
            error.kind(),
            ErrorKind::Server(redis::ServerErrorKind::NoScript)
        );
        let Value::ServerError(error) = whole(b"-ERR value is not an integer\r\n") else {
            panic!("an error reply is a server error");
        };
        assert!(
            RedisError::from(error)
                .to_string()
                .contains("not an integer")
        );
    }

    #[test]
    fn a_reply_cut_anywhere_waits_for_the_rest() {
        let bytes = b"*3\r\n$4\r\nabcd\r\n:12\r\n*1\r\n+OK\r\n+NEXT\r\n";
        let first = bytes.len() - b"+NEXT\r\n".len();
        for cut in 0..first {
            assert_eq!(
                parse(&bytes[..cut]).expect("not broken"),
                None,
                "cut at {cut}"
            );
        }
        let (_, used) = parse(bytes).expect("parses").expect("complete");
        assert_eq!(used, first, "only the first reply is taken");
    }

    #[test]
    fn broken_streams_are_errors_not_panics() {
        for bytes in [
            &b"?what\r\n"[..],
            b"$3\r\nabcXY",
            b":x\r\n",
            b"$x\r\n",
            b"+OK\rX",
            b"$999999999999\r\n",
        ] {
            assert!(
                parse(bytes).is_err(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert!(parse(deep.as_bytes()).is_err());
        // Arbitrary bytes: an error, a wait or a value, never a panic.
        let alphabet = b"*$:+-\r\n0123-1ab";
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let len = (seed % 24) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn a_huge_announced_array_allocates_nothing_until_it_is_there() {
        assert_eq!(parse(b"*100000000\r\n:1\r\n").expect("not broken"), None);
    }
}
