//! The benchmark's upstream: a tiny HTTP/1.1 keep-alive server that answers each request with a
//! canned, pre-serialised response picked by a substring of the request body.
//!
//! Why not Envoy's `direct_response`: the upstream shares a core with the load generator, and an
//! Envoy upstream costs about as much CPU per request as the proxy under test, so that core
//! saturated first and capped every variant at the same rate. Why pick by body, not by a header:
//! Envoy's native `mcp_router` builds its own upstream requests and drops the client's headers,
//! so only the JSON-RPC body (method, tool name) reaches the upstream intact in every variant.
//!
//! Usage: `bench-upstream ADDR MATCH=FILE...`
//!   ADDR        a loopback `ip:port` to listen on (other addresses are refused)
//!   MATCH=FILE  FILE holds a complete HTTP/1.1 response (status line, headers including
//!               `content-length` or `transfer-encoding: chunked`, body); it answers a request
//!               whose body contains MATCH. The first match wins; a request that matches none
//!               gets 404.
//!
//! A chunked response is written one chunk per `write` (the head goes with the first chunk), as
//! a server streaming SSE events does: the proxy then sees the body arrive in pieces, not in one
//! read. The chunk sizes are the file's own; the server parses nothing at run time.
//!
//! One thread per connection: blocking reads cost no more than epoll wake-ups at these
//! connection counts, and the code stays std-only. Bodies may be `content-length` or chunked
//! (the native router streams its upstream bodies chunked).

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;

/// Requests larger than this (head or body) are answered 413 and the connection closed.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

const NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 14\r\n\r\nno reply match";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
const TOO_LARGE: &[u8] =
    b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// A canned response and the body substring that selects it.
struct Reply {
    pattern: Vec<u8>,
    response: Vec<u8>,
    /// Where each write ends (exclusive offsets into `response`, the last is its length): one
    /// write for a `content-length` response, one per chunk for a chunked one.
    writes: Vec<usize>,
}

/// What the bytes received so far hold.
#[derive(Debug, PartialEq)]
enum Parsed<'a> {
    /// A whole request: its length in the buffer and its (de-chunked) body.
    Complete {
        consumed: usize,
        body: Cow<'a, [u8]>,
    },
    /// Not yet a whole request: read more.
    Incomplete,
    /// Malformed: answer 400 and close.
    Bad,
    /// Over the size limits: answer 413 and close.
    TooLarge,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses one HTTP/1.1 request from the front of `buf`.
fn parse_request(buf: &[u8]) -> Parsed<'_> {
    let Some(head_len) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return if buf.len() > MAX_HEAD {
            Parsed::TooLarge
        } else {
            Parsed::Incomplete
        };
    };
    let Some(head) = buf.get(..head_len) else {
        return Parsed::Bad;
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return Parsed::Bad;
    };
    let mut content_length: usize = 0;
    let mut chunked = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse() {
                Ok(n) => content_length = n,
                Err(_) => return Parsed::Bad,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = buf.get(head_len..).unwrap_or_default();
    if chunked {
        return match dechunk(rest) {
            Parsed::Complete { consumed, body } => Parsed::Complete {
                consumed: head_len + consumed,
                body,
            },
            other => other,
        };
    }
    if content_length > MAX_BODY {
        return Parsed::TooLarge;
    }
    match rest.get(..content_length) {
        Some(body) => Parsed::Complete {
            consumed: head_len + content_length,
            body: Cow::Borrowed(body),
        },
        None => Parsed::Incomplete,
    }
}

/// Decodes a chunked body from the front of `buf` (chunk extensions and trailers are skipped).
fn dechunk(buf: &[u8]) -> Parsed<'_> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(line_end) = find(rest, b"\r\n") else {
            return if rest.len() > MAX_HEAD {
                Parsed::Bad
            } else {
                Parsed::Incomplete
            };
        };
        let line = rest.get(..line_end).unwrap_or_default();
        let size_text = line.split(|b| *b == b';').next().unwrap_or_default();
        let Ok(size_text) = std::str::from_utf8(size_text) else {
            return Parsed::Bad;
        };
        let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
            return Parsed::Bad;
        };
        pos += line_end + 2;
        if size == 0 {
            // Trailer section: header lines, then an empty line.
            let rest = buf.get(pos..).unwrap_or_default();
            if rest.starts_with(b"\r\n") {
                return Parsed::Complete {
                    consumed: pos + 2,
                    body: Cow::Owned(body),
                };
            }
            return match find(rest, b"\r\n\r\n") {
                Some(end) => Parsed::Complete {
                    consumed: pos + end + 4,
                    body: Cow::Owned(body),
                },
                None => Parsed::Incomplete,
            };
        }
        if body.len() + size > MAX_BODY {
            return Parsed::TooLarge;
        }
        let Some(data) = buf.get(pos..pos + size) else {
            return Parsed::Incomplete;
        };
        match buf.get(pos + size..pos + size + 2) {
            Some(b"\r\n") => {}
            Some(_) => return Parsed::Bad,
            None => return Parsed::Incomplete,
        }
        body.extend_from_slice(data);
        pos += size + 2;
    }
}

/// The reply for a request body: the first whose pattern it contains.
fn pick<'a>(replies: &'a [Reply], body: &[u8]) -> Option<&'a Reply> {
    replies.iter().find(|r| find(body, &r.pattern).is_some())
}

/// Writes a reply as its `writes` say: one `write_all` per piece (TCP_NODELAY is set, so each
/// leaves as its own segment).
fn send(stream: &mut TcpStream, reply: Option<&Reply>) -> io::Result<()> {
    let Some(reply) = reply else {
        return stream.write_all(NOT_FOUND);
    };
    let mut start = 0;
    for &end in &reply.writes {
        stream.write_all(reply.response.get(start..end).unwrap_or_default())?;
        start = end;
    }
    Ok(())
}

/// The write boundaries of a canned response: after each chunk of a chunked body (the head
/// travels with the first chunk), else the whole response at once.
fn write_boundaries(response: &[u8]) -> Result<Vec<usize>, String> {
    let head_len = find(response, b"\r\n\r\n").map_or(response.len(), |i| i + 4);
    let head = String::from_utf8_lossy(response.get(..head_len).unwrap_or_default());
    let chunked = head.split("\r\n").any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    });
    if !chunked {
        return Ok(vec![response.len()]);
    }
    let mut ends = Vec::new();
    let mut pos = head_len;
    loop {
        let rest = response.get(pos..).unwrap_or_default();
        let line_end = find(rest, b"\r\n").ok_or("chunk size line without CRLF")?;
        let size_text = String::from_utf8_lossy(rest.get(..line_end).unwrap_or_default());
        let size_text = size_text
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let size = usize::from_str_radix(&size_text, 16)
            .map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
        if size == 0 {
            // The last chunk and the (empty) trailer section go out together.
            ends.push(response.len());
            return Ok(ends);
        }
        pos += line_end + 2 + size + 2;
        if pos > response.len() {
            return Err("chunk runs past the end of the file".into());
        }
        ends.push(pos);
    }
}

fn serve(mut stream: TcpStream, replies: &[Reply]) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Answer every whole request already buffered (pipelining), then read more.
        loop {
            let (consumed, reply) = match parse_request(&buf) {
                Parsed::Complete { consumed, body } => (consumed, pick(replies, &body)),
                Parsed::Incomplete => break,
                Parsed::Bad => return stream.write_all(BAD_REQUEST),
                Parsed::TooLarge => return stream.write_all(TOO_LARGE),
            };
            send(&mut stream, reply)?;
            buf.drain(..consumed);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

fn load_replies(args: &[String]) -> Result<Vec<Reply>, String> {
    args.iter()
        .map(|arg| {
            let (pattern, file) = arg
                .split_once('=')
                .ok_or_else(|| format!("reply `{arg}`: expected MATCH=FILE"))?;
            let response = std::fs::read(file)
                .map_err(|e| format!("reply `{arg}`: cannot read {file}: {e}"))?;
            if !response.starts_with(b"HTTP/1.1 ") || find(&response, b"\r\n\r\n").is_none() {
                return Err(format!("reply `{arg}`: {file} is not an HTTP/1.1 response"));
            }
            let writes =
                write_boundaries(&response).map_err(|e| format!("reply `{arg}`: {file}: {e}"))?;
            Ok(Reply {
                pattern: pattern.as_bytes().to_vec(),
                response,
                writes,
            })
        })
        .collect()
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((addr, reply_args)) = args.split_first() else {
        return Err("usage: bench-upstream ADDR MATCH=FILE...".into());
    };
    let addr: SocketAddr = addr.parse().map_err(|e| format!("ADDR `{addr}`: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "ADDR `{addr}`: only loopback addresses are allowed"
        ));
    }
    let replies = Arc::new(load_replies(reply_args)?);
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    println!(
        "bench-upstream listening on {addr} with {} replies",
        replies.len()
    );
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let replies = Arc::clone(&replies);
        // A failed connection (peer reset) ends only its own thread.
        thread::spawn(move || {
            let _ = serve(stream, &replies);
        });
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-upstream: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn body_of(p: Parsed<'_>) -> (usize, Vec<u8>) {
        match p {
            Parsed::Complete { consumed, body } => (consumed, body.into_owned()),
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    #[test]
    fn content_length_request_is_complete_only_with_its_whole_body() {
        let req = b"POST /mcp HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(body_of(parse_request(req)), (req.len(), b"hello".to_vec()));
        for cut in 0..req.len() {
            assert_eq!(
                parse_request(&req[..cut]),
                Parsed::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn chunked_request_is_decoded_and_complete_only_at_the_last_chunk() {
        let req = b"POST /mcp HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3;x=1\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        assert_eq!(body_of(parse_request(req)), (req.len(), b"hello".to_vec()));
        for cut in 0..req.len() {
            assert_eq!(
                parse_request(&req[..cut]),
                Parsed::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn pipelined_requests_are_consumed_one_at_a_time() {
        let one = b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\nab".to_vec();
        let two = [one.clone(), one.clone()].concat();
        assert_eq!(body_of(parse_request(&two)), (one.len(), b"ab".to_vec()));
    }

    #[test]
    fn malformed_and_oversized_requests_are_refused() {
        let cases: [(&[u8], Parsed<'_>); 3] = [
            (b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n", Parsed::Bad),
            (
                b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                Parsed::Bad,
            ),
            (
                b"POST / HTTP/1.1\r\ncontent-length: 99999999999\r\n\r\n",
                Parsed::TooLarge,
            ),
        ];
        for (req, want) in cases {
            assert_eq!(parse_request(req), want, "{}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn first_matching_reply_wins_and_no_match_is_none() {
        let reply = |pattern: &[u8], response: &[u8]| Reply {
            pattern: pattern.to_vec(),
            response: response.to_vec(),
            writes: vec![response.len()],
        };
        let replies = vec![
            reply(b"\"initialize\"", b"INIT"),
            reply(b"\"tools/call\"", b"CALL"),
        ];
        let picked = |body: &[u8]| pick(&replies, body).map(|r| r.response.clone());
        assert_eq!(
            picked(br#"{"method":"tools/call"}"#),
            Some(b"CALL".to_vec())
        );
        assert_eq!(
            picked(br#"{"method":"initialize"}"#),
            Some(b"INIT".to_vec())
        );
        assert_eq!(picked(br#"{"method":"ping"}"#), None);
    }

    #[test]
    fn chunked_reply_is_written_one_chunk_per_write() {
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        let response = format!("{head}3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        let first = head.len() + "3\r\nabc\r\n".len();
        let second = first + "2\r\nde\r\n".len();
        assert_eq!(
            write_boundaries(response.as_bytes()),
            Ok(vec![first, second, response.len()])
        );
    }

    #[test]
    fn content_length_reply_is_one_write_and_bad_chunking_is_refused() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(write_boundaries(plain), Ok(vec![plain.len()]));
        for bad in [
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nff\r\nshort\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
        ] {
            assert!(write_boundaries(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
