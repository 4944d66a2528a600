//! Just enough HTTP/1.x to serve one resource to Prometheus and curl: a request head is read
//! (no body is ever expected), one response is written, the connection is closed. A client
//! gets a deadline for its whole request head and another for reading the response, so that
//! a slow or idle one cannot hold a connection (and a descriptor) for long.

use std::{io, time::Duration};

use tokio::net::TcpStream;

/// Longest request head accepted; Prometheus sends a few hundred bytes. Longer: 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// The whole request head must arrive within this long of the connection's accept.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// The whole response must be taken by the client within this long.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    pub accept: Option<String>,
}

/// Parses a request head (request line and header lines, up to the blank line); `None` when
/// it is not HTTP/1.x.
pub fn parse_request(head: &[u8]) -> Option<Request> {
    let head = std::str::from_utf8(head).ok()?;
    // CRLF as the RFC says, or bare LF as it allows (RFC 9112 section 2.2).
    let mut lines = head
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next().filter(|m| !m.is_empty())?;
    let target = request_line.next()?;
    let version = request_line.next()?;
    if request_line.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    // The absolute form (`GET http://host:port/metrics`) that proxies send names the path too.
    let target = match target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        Some(rest) => rest.find('/').map_or("/", |slash| &rest[slash..]),
        None => target,
    };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let mut accept = None;
    for line in lines.take_while(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("accept") {
            accept = Some(value.trim().to_owned());
        }
    }
    Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        accept,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }

    /// The bytes on the wire; a HEAD response has the headers of the GET one and no body.
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        };
        let mut bytes = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            bytes.push_str("Allow: GET, HEAD\r\n");
        }
        bytes.push_str("Connection: close\r\n\r\n");
        let mut bytes = bytes.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// What reading a request head gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// The head, up to and including the line end before the blank line.
    Complete(Vec<u8>),
    /// Longer than [`MAX_HEAD`]: answered with 431.
    TooLarge,
    /// The client closed, or did not send a whole head in time: nobody to answer.
    Gone,
}

/// Where the blank line that ends a head starts (after CRLF or LF line ends), if it is there.
fn end_of_head(bytes: &[u8]) -> Option<usize> {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'\n')
        .find_map(|(index, _)| match &bytes[index + 1..] {
            [b'\n', ..] | [b'\r', b'\n', ..] => Some(index + 1),
            _ => None,
        })
}

/// Reads up to the end of the request head, within [`HEAD_DEADLINE`] of the call.
pub async fn read_head(stream: &TcpStream) -> io::Result<Head> {
    let read = async {
        let mut head = Vec::new();
        let mut buffer = [0u8; 2048];
        loop {
            stream.readable().await?;
            match stream.try_read(&mut buffer) {
                Ok(0) => return Ok(Head::Gone),
                Ok(n) => {
                    // Only the new bytes and the two before them can complete the end.
                    let from = head.len().saturating_sub(2);
                    head.extend_from_slice(&buffer[..n]);
                    if let Some(end) = end_of_head(&head[from..]) {
                        head.truncate(from + end);
                        return Ok(if head.len() > MAX_HEAD {
                            Head::TooLarge
                        } else {
                            Head::Complete(head)
                        });
                    }
                    if head.len() > MAX_HEAD {
                        return Ok(Head::TooLarge);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
    };
    tokio::time::timeout(HEAD_DEADLINE, read)
        .await
        .unwrap_or(Ok(Head::Gone))
}

/// Writes `bytes`, within [`WRITE_DEADLINE`].
pub async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    let write = async {
        while !bytes.is_empty() {
            stream.writable().await?;
            match stream.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    };
    tokio::time::timeout(WRITE_DEADLINE, write)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_scrape_request() {
        let head = b"GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9464\r\n\
                     Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\
                     User-Agent: Prometheus/2.42.0\r\n\r\n";
        let request = parse_request(head).unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/metrics");
        assert_eq!(
            request.accept.as_deref(),
            Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
        );
    }

    #[test]
    fn bare_lf_and_absolute_form() {
        let request =
            parse_request(b"GET http://127.0.0.1:9464/metrics?a HTTP/1.0\nAccept: x\n").unwrap();
        assert_eq!(request.path, "/metrics");
        assert_eq!(request.accept.as_deref(), Some("x"));
        assert_eq!(
            parse_request(b"GET http://host HTTP/1.1\r\n").unwrap().path,
            "/"
        );
        assert_eq!(end_of_head(b"GET / HTTP/1.1\nHost: a\n\n"), Some(23));
        assert_eq!(end_of_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Some(25));
        assert_eq!(end_of_head(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }

    #[test]
    fn malformed_requests() {
        assert_eq!(parse_request(b""), None);
        assert_eq!(parse_request(b"GET\r\n\r\n"), None);
        assert_eq!(parse_request(b"GET /metrics SPDY/3\r\n\r\n"), None);
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n"),
            None
        );
        assert_eq!(parse_request(b"\xff\xfe / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_request(b" /metrics HTTP/1.1\r\n\r\n"), None);
    }

    #[test]
    fn head_responses_have_no_body() {
        let response = Response::text(200, "hello\n");
        let head = String::from_utf8(response.encode(true)).unwrap();
        assert!(head.contains("Content-Length: 6\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
        let get = String::from_utf8(response.encode(false)).unwrap();
        assert!(get.ends_with("\r\n\r\nhello\n"));
        let refused = String::from_utf8(Response::text(405, "").encode(false)).unwrap();
        assert!(refused.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(refused.contains("Allow: GET, HEAD\r\n"));
    }
}
