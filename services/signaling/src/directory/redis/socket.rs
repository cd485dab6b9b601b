//! One TCP connection to one Redis server, used by one task at a time: a batch of commands is
//! written at once and its replies read back, in order, before the next. No task of its own
//! and no reply channel per command: the batching task owns the socket (`super::batch`).

use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, ErrorKind, RedisError, RedisResult, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::resp;

/// Read in chunks of at least this much.
const CHUNK: usize = 16 * 1024;

pub struct Socket {
    stream: TcpStream,
    /// Bytes read and not yet parsed, from `start`.
    buffer: Vec<u8>,
    start: usize,
}

impl Socket {
    /// Connects to the server `info` names, then signs in and selects its database: each of
    /// the two within `timeout`.
    pub async fn connect(info: &ConnectionInfo, timeout: Duration) -> RedisResult<Self> {
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "only plain TCP connections to Redis are supported",
            )));
        };
        let connecting = TcpStream::connect((host.as_str(), *port));
        let stream = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| timed_out())??;
        stream.set_nodelay(true)?;
        let mut socket = Socket {
            stream,
            buffer: Vec::with_capacity(CHUNK),
            start: 0,
        };
        let settings = info.redis_settings();
        let mut hello = Vec::new();
        let mut count = 0;
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = settings.username() {
                auth.arg(username);
            }
            auth.arg(password).write_packed_command(&mut hello);
            count += 1;
        }
        if settings.db() != 0 {
            redis::cmd("SELECT")
                .arg(settings.db())
                .write_packed_command(&mut hello);
            count += 1;
        }
        for reply in socket.exchange(&hello, count, timeout).await? {
            reply.extract_error()?;
        }
        Ok(socket)
    }

    /// Writes `commands` (`count` of them, packed) and reads their replies, all within
    /// `timeout`. After any error the socket is out of step with the server: drop it.
    pub async fn exchange(
        &mut self,
        commands: &[u8],
        count: usize,
        timeout: Duration,
    ) -> RedisResult<Vec<Value>> {
        tokio::time::timeout(timeout, async {
            self.stream.write_all(commands).await?;
            let mut replies = Vec::with_capacity(count);
            while replies.len() < count {
                match resp::parse(&self.buffer[self.start..])? {
                    Some((reply, used)) => {
                        replies.push(reply);
                        self.start += used;
                    }
                    None => self.read_more().await?,
                }
            }
            self.buffer.drain(..self.start);
            self.start = 0;
            Ok(replies)
        })
        .await
        .map_err(|_| timed_out())?
    }

    async fn read_more(&mut self) -> RedisResult<()> {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        // A long reply arriving in pieces: room for as much again, so it is parsed a few times
        // rather than once per chunk.
        self.buffer
            .reserve(CHUNK.max(self.buffer.len() - self.start));
        if self.stream.read_buf(&mut self.buffer).await? == 0 {
            return Err(RedisError::from(std::io::Error::from(
                std::io::ErrorKind::UnexpectedEof,
            )));
        }
        Ok(())
    }
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

#[cfg(test)]
mod tests {
    use redis::AsyncCommands;
    use testkit::redis::{Redis, cli};

    use crate::directory::redis::connection::{Backend, Conn, StoreUrl};

    async fn connect(url: &str) -> redis::RedisResult<Conn> {
        let url: StoreUrl = url.parse().expect("a redis url");
        Backend::new(&url).expect("a client").connect(None).await
    }

    #[tokio::test]
    async fn signs_in_as_the_urls_user_and_selects_its_database() {
        let redis = Redis::start().await;
        let port = redis.port();
        let user = [
            "ACL", "SETUSER", "sig", "on", ">s3cret", "~*", "&*", "+@all",
        ];
        cli(port, &user).await;
        cli(port, &["CONFIG", "SET", "requirepass", "topsecret"]).await;
        let mut third = connect(&format!("redis://sig:s3cret@127.0.0.1:{port}/3"))
            .await
            .expect("signed in as sig");
        let _: () = third.set("k", "v").await.expect("written");
        let mut first = connect(&format!("redis://:topsecret@127.0.0.1:{port}"))
            .await
            .expect("signed in as the default user");
        let absent: Option<String> = first.get("k").await.expect("read");
        assert_eq!(absent, None, "the key went to database 3");
        let present: Option<String> = third.get("k").await.expect("read");
        assert_eq!(present.as_deref(), Some("v"));
        let refused = connect(&format!("redis://:wrong@127.0.0.1:{port}")).await;
        assert!(refused.is_err(), "a wrong password fails the connection");
    }
}
