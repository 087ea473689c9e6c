//! The simplest possible OVSDB writer, the yardstick of the benchmarks:
//! pre-serialized JSON-RPC requests written on a unix socket as fast as a
//! window of requests in flight allows, replies only counted (no parsing, no
//! replica). A client's throughput divided by this writer's, measured in the
//! same run, is the figure the benchmarks print.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Semaphore;

/// Counts complete top-level JSON values in a byte stream.
#[derive(Default)]
struct ReplyCounter {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl ReplyCounter {
    fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut done = 0;
        for &b in bytes {
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        done += 1;
                    }
                }
                _ => {}
            }
        }
        done
    }
}

/// Writes every message (one serialized request each) on the unix socket
/// `socket` (a path, or a `unix:` remote) with at most `window` requests
/// awaiting their reply, and returns the time until the last reply arrived.
pub async fn send_pipelined(
    socket: &str,
    messages: Vec<Vec<u8>>,
    window: usize,
) -> Result<Duration> {
    let path = socket.trim_start_matches("unix:");
    let stream = UnixStream::connect(path)
        .await
        .with_context(|| format!("connecting to {path}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let permits = Arc::new(Semaphore::new(window));
    let total = messages.len();
    let start = Instant::now();
    let writer_permits = permits.clone();
    let writer = tokio::spawn(async move {
        for message in messages {
            writer_permits.acquire().await?.forget();
            wr.write_all(&message).await?;
        }
        anyhow::Ok(wr)
    });
    let mut counter = ReplyCounter::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut replies = 0;
    while replies < total {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            bail!("the server closed the connection after {replies} of {total} replies");
        }
        let k = counter.feed(&buf[..n]);
        replies += k;
        permits.add_permits(k);
    }
    let elapsed = start.elapsed();
    drop(writer.await??);
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use super::ReplyCounter;

    #[test]
    fn counts_values_split_anywhere() {
        let stream =
            br#"{"id":1,"result":[{"uuid":["uuid","x"]}],"error":null}{"id":2,"result":"a}]\"{"}"#;
        for split in 0..stream.len() {
            let mut counter = ReplyCounter::default();
            let n = counter.feed(&stream[..split]) + counter.feed(&stream[split..]);
            assert_eq!(n, 2, "split at {split}");
        }
    }
}
