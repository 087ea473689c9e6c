//! Splits a byte stream of back-to-back JSON values (no delimiters, as OVSDB sends them) into
//! complete messages, tracking strings, escapes and nesting incrementally.

use crate::error::{Error, Result};

/// Incremental splitter of concatenated JSON objects/arrays.
///
/// Feed bytes with [`JsonSplitter::push`], then drain complete messages with
/// [`JsonSplitter::next_message`]. A message is only scanned once, however it is fragmented.
#[derive(Debug)]
pub struct JsonSplitter {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned.
    scanned: usize,
    /// Bytes at the front of `buf` already returned, dropped at the next push.
    consumed: usize,
    /// Start of the current (incomplete) message in `buf`, if one started.
    start: Option<usize>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    max_message: usize,
}

impl JsonSplitter {
    /// A splitter rejecting messages longer than `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        JsonSplitter {
            buf: Vec::new(),
            scanned: 0,
            consumed: 0,
            start: None,
            depth: 0,
            in_string: false,
            escaped: false,
            max_message,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.scanned -= self.consumed;
            self.start = self.start.map(|s| s - self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet returned as part of a message (ignoring leading whitespace).
    pub fn pending(&self) -> usize {
        match self.start {
            Some(s) => self.buf.len() - s,
            None => self.buf[self.scanned..]
                .iter()
                .filter(|b| !b.is_ascii_whitespace())
                .count(),
        }
    }

    /// The next complete top-level message, if one is buffered.
    ///
    /// Errors: a top-level token that is not an object or array ([`Error::Protocol`]), unbalanced
    /// closing brackets, or a message exceeding the limit ([`Error::MessageTooLarge`]). After an
    /// error the stream is unusable.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>> {
        let mut i = self.scanned;
        while i < self.buf.len() {
            let b = self.buf[i];
            if self.start.is_none() {
                match b {
                    b'{' | b'[' => {
                        self.start = Some(i);
                        self.depth = 1;
                    }
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    other => {
                        return Err(Error::protocol(format!(
                            "unexpected byte {:?} between JSON-RPC messages",
                            other as char
                        )));
                    }
                }
            } else if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            let start = self.start.take().unwrap_or(0);
                            let msg = self.buf[start..=i].to_vec();
                            self.consumed = i + 1;
                            self.scanned = i + 1;
                            return Ok(Some(msg));
                        }
                    }
                    _ => {}
                }
            }
            i += 1;
            if let Some(s) = self.start
                && i - s > self.max_message
            {
                return Err(Error::MessageTooLarge {
                    limit: self.max_message,
                });
            }
        }
        if self.start.is_none() {
            // Only whitespace left: drop everything.
            self.buf.clear();
            self.scanned = 0;
            self.consumed = 0;
        } else {
            self.scanned = i;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Result<Vec<String>> {
        let mut s = JsonSplitter::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c);
            while let Some(m) = s.next_message()? {
                out.push(String::from_utf8(m).unwrap());
            }
        }
        Ok(out)
    }

    #[test]
    fn back_to_back_values() {
        let got = split_all(&[br#"{"a":1}{"b":[1,2]} [3]"#]).unwrap();
        assert_eq!(got, vec![r#"{"a":1}"#, r#"{"b":[1,2]}"#, "[3]"]);
    }

    #[test]
    fn byte_by_byte_with_strings_and_escapes() {
        let text = br#"{"s":"}{\"]\\","t":{"u":["}"]}}{"x":"\\"}"#;
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        let got = split_all(&chunks).unwrap();
        assert_eq!(
            got,
            vec![r#"{"s":"}{\"]\\","t":{"u":["}"]}}"#, r#"{"x":"\\"}"#]
        );
        for m in got {
            serde_json::from_str::<serde_json::Value>(&m).unwrap();
        }
    }

    #[test]
    fn incomplete_message_stays_pending() {
        let mut s = JsonSplitter::new(1024);
        s.push(br#"{"a":"#);
        assert!(s.next_message().unwrap().is_none());
        assert_eq!(s.pending(), 5);
        s.push(b"2}\n");
        assert_eq!(s.next_message().unwrap().unwrap(), br#"{"a":2}"#);
        assert!(s.next_message().unwrap().is_none());
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn oversized_message_is_rejected() {
        let mut s = JsonSplitter::new(16);
        s.push(br#"{"a":"0123456789012345678"}"#);
        assert!(matches!(
            s.next_message(),
            Err(Error::MessageTooLarge { limit: 16 })
        ));
    }

    #[test]
    fn garbage_between_messages_is_rejected() {
        assert!(matches!(split_all(&[b"{} x"]), Err(Error::Protocol(_))));
        assert!(matches!(split_all(&[b"]"]), Err(Error::Protocol(_))));
    }
}
