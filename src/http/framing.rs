//! Request framing as it arrives on the wire, for the one rule hyper hides: a request
//! that carries both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.1, the classic
//! request-smuggling shape). hyper drops the Content-Length before the service sees the
//! headers, so the bytes are followed here instead: [`Framing`] walks request heads,
//! fixed-length and chunked bodies in order, and queues one verdict per request head,
//! which the service takes in the same order hyper hands it the requests. SPEC §8 asks
//! for 400 on such a request (RFC 9112 allows refusing it).
//!
//! Pure and synchronous: bytes in, verdicts out. The I/O wrapper that feeds it is
//! [`Sniffed`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest line followed; beyond it the stream is no longer followed (hyper refuses such
/// a head itself, and closes the connection).
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request head, line by line; `started` once the request line was seen.
    Head {
        started: bool,
    },
    /// Skipping a fixed-length body.
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data (bytes left).
    ChunkEnd(u8),
    Trailers,
    /// Framing could not be followed (malformed input hyper refuses on its own).
    Lost,
}

/// Follows the requests on one connection.
#[derive(Debug)]
pub struct Framing {
    state: State,
    line: Vec<u8>,
    length: Option<u64>,
    chunked: bool,
    both: bool,
    verdicts: VecDeque<bool>,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            state: State::Head { started: false },
            line: Vec::new(),
            length: None,
            chunked: false,
            both: false,
            verdicts: VecDeque::new(),
        }
    }
}

impl Framing {
    /// Takes the next request's verdict: `true` when its head had both Content-Length
    /// and Transfer-Encoding.
    pub fn next_verdict(&mut self) -> bool {
        self.verdicts.pop_front().unwrap_or(false)
    }

    /// Follows `bytes` as they arrive.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Lost => return,
                State::Body(left) => {
                    let n = (bytes.len() as u64).min(left);
                    bytes = &bytes[n as usize..];
                    self.state = if left == n {
                        State::Head { started: false }
                    } else {
                        State::Body(left - n)
                    };
                }
                State::ChunkData(left) => {
                    let n = (bytes.len() as u64).min(left);
                    bytes = &bytes[n as usize..];
                    self.state = if left == n {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(left - n)
                    };
                }
                State::ChunkEnd(left) => {
                    // CRLF (a bare LF is tolerated, as hyper does not).
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.state = match (left, b) {
                        (2, b'\r') => State::ChunkEnd(1),
                        (_, b'\n') => State::ChunkSize,
                        _ => State::Lost,
                    };
                }
                State::Head { .. } | State::ChunkSize | State::Trailers => {
                    match bytes.iter().position(|&b| b == b'\n') {
                        None => {
                            self.line.extend_from_slice(bytes);
                            if self.line.len() > MAX_LINE {
                                self.line = Vec::new();
                                self.state = State::Lost;
                            }
                            return;
                        }
                        Some(i) => {
                            self.line.extend_from_slice(&bytes[..i]);
                            bytes = &bytes[i + 1..];
                            let mut line = std::mem::take(&mut self.line);
                            if line.last() == Some(&b'\r') {
                                line.pop();
                            }
                            self.line_done(&line);
                            // The buffer is kept for the next line (no allocation per line).
                            line.clear();
                            if self.state != State::Lost {
                                self.line = line;
                            }
                        }
                    }
                }
            }
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        match self.state {
            State::Head { started: false } if line.is_empty() => {} // RFC 9112 §2.2
            State::Head { started: false } => {
                self.state = State::Head { started: true };
                (self.length, self.chunked, self.both) = (None, false, false);
            }
            State::Head { started: true } if line.is_empty() => {
                self.verdicts.push_back(self.both);
                self.state = if self.chunked {
                    State::ChunkSize
                } else {
                    match self.length {
                        Some(n) if n > 0 => State::Body(n),
                        _ => State::Head { started: false },
                    }
                };
            }
            State::Head { started: true } => {
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    return;
                };
                let name = &line[..colon];
                let value = || {
                    String::from_utf8_lossy(&line[colon + 1..])
                        .trim()
                        .to_string()
                };
                if name.eq_ignore_ascii_case(b"content-length") {
                    match value().parse::<u64>() {
                        Ok(n) => self.length = Some(n),
                        Err(_) => self.state = State::Lost,
                    }
                    self.both |= self.chunked;
                } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                    self.chunked = true;
                    self.both |= self.length.is_some();
                }
            }
            State::ChunkSize => {
                let text = String::from_utf8_lossy(line);
                let size = text.split(';').next().unwrap_or("").trim();
                self.state = match u64::from_str_radix(size, 16) {
                    Ok(0) => State::Trailers,
                    Ok(n) => State::ChunkData(n),
                    Err(_) => State::Lost,
                };
            }
            State::Trailers if line.is_empty() => self.state = State::Head { started: false },
            State::Trailers => {}
            State::Body(_) | State::ChunkData(_) | State::ChunkEnd(_) | State::Lost => {}
        }
    }
}

/// A connection whose incoming bytes are followed by a shared [`Framing`].
pub struct Sniffed<S> {
    inner: S,
    framing: Arc<Mutex<Framing>>,
}

impl<S> Sniffed<S> {
    /// Wraps a stream; the returned handle gives the verdicts to the service.
    pub fn new(inner: S) -> (Sniffed<S>, Arc<Mutex<Framing>>) {
        let framing = Arc::new(Mutex::new(Framing::default()));
        (
            Sniffed {
                inner,
                framing: framing.clone(),
            },
            framing,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let mut f = self.framing.lock().unwrap_or_else(|p| p.into_inner());
            f.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniffed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(wire: &[u8], split: usize) -> Vec<bool> {
        let mut f = Framing::default();
        for piece in wire.chunks(split) {
            f.feed(piece);
        }
        std::iter::from_fn(|| (!f.verdicts.is_empty()).then(|| f.next_verdict())).collect()
    }

    #[test]
    fn requests_are_followed_through_bodies_and_chunks() {
        let wire = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n\
POST /t HTTP/1.1\r\nHost: a\r\nContent-Length: 27\r\n\r\nTransfer-Encoding: chunked\n\
POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n\
POST /t HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
GET /after HTTP/1.1\r\nHost: a\r\n\r\n";
        for split in [1, 2, 3, 7, 64, wire.len()] {
            assert_eq!(
                verdicts(wire, split),
                [false, false, false, true, false],
                "split {split}"
            );
        }
    }

    #[test]
    fn either_order_counts_and_case_does_not_matter() {
        let te_first =
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 3\r\n\r\n0\r\n\r\n";
        assert_eq!(verdicts(te_first, 5), [true]);
        let cl_only = b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(verdicts(cl_only, 4), [false, false]);
    }

    #[test]
    fn malformed_framing_stops_following() {
        let bad = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(
            verdicts(bad, 3),
            [false],
            "nothing after the bad chunk size"
        );
        let huge = vec![b'a'; MAX_LINE + 10];
        let mut f = Framing::default();
        f.feed(&huge);
        assert_eq!(f.state, State::Lost);
        assert!(f.line.is_empty(), "nothing kept once lost");
    }
}
