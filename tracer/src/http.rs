//! Just enough HTTP/1.x to serve one resource to Prometheus and curl: a request head is read
//! (no body is ever expected), one response is written, the connection is closed. A client
//! gets a deadline for its whole request head and another for reading the response, so that
//! a slow or idle one cannot hold a connection (and a descriptor) for long; and when every
//! connection is taken, the oldest one still silent makes room for a newcomer, so that idle
//! clients on a shared machine cannot keep the real scraper out.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    io,
    rc::Rc,
    time::Duration,
};

use tokio::{net::TcpStream, task::AbortHandle};

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

/// The connections served at once, up to a limit. At the limit, the oldest connection that has
/// not sent its whole request head is closed to make room: a client that sends its request at
/// once (Prometheus, curl) always gets in, however many idle ones a local user holds open.
/// Connections being answered are never closed early.
#[derive(Debug)]
pub struct Connections {
    limit: usize,
    open: Cell<usize>,
    next_id: Cell<u64>,
    /// Open connections that have not sent a whole head yet, oldest first.
    silent: RefCell<VecDeque<(u64, AbortHandle)>>,
}

/// One admitted connection's place among the [`Connections`]; gives it back when dropped,
/// whether its task ended or was closed to make room.
#[derive(Debug)]
pub struct Admitted {
    id: u64,
    connections: Rc<Connections>,
}

impl Connections {
    pub fn new(limit: usize) -> Rc<Self> {
        Rc::new(Self {
            limit,
            open: Cell::new(0),
            next_id: Cell::new(0),
            silent: RefCell::new(VecDeque::new()),
        })
    }

    /// Serves a new connection with `serve`, on a local task, closing the oldest silent one
    /// when every place is taken; `false` (the newcomer is to be refused) when every open
    /// connection is being answered.
    pub fn admit<F>(this: &Rc<Self>, serve: impl FnOnce(Admitted) -> F) -> bool
    where
        F: Future<Output = ()> + 'static,
    {
        if this.open.get() >= this.limit {
            let oldest = this.silent.borrow_mut().pop_front();
            let Some((_, oldest)) = oldest else {
                return false;
            };
            // Its guard gives its place back when the aborted task is dropped.
            oldest.abort();
        }
        let id = this.next_id.get();
        this.next_id.set(id + 1);
        this.open.set(this.open.get() + 1);
        let admitted = Admitted {
            id,
            connections: Rc::clone(this),
        };
        let task = tokio::task::spawn_local(serve(admitted));
        this.silent
            .borrow_mut()
            .push_back((id, task.abort_handle()));
        true
    }

    fn forget(&self, id: u64) {
        self.silent.borrow_mut().retain(|(silent, _)| *silent != id);
    }
}

impl Admitted {
    /// Its whole request head arrived: it is being answered and is never closed early.
    pub fn spoke(&self) {
        self.connections.forget(self.id);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let connections = &self.connections;
        connections
            .open
            .set(connections.open.get().saturating_sub(1));
        connections.forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At the limit, the oldest silent connection makes room; one that spoke is kept, and when
    /// every open one spoke, a newcomer is refused.
    #[test]
    fn the_oldest_silent_connection_makes_room() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, async {
            let connections = Connections::new(2);
            let ended = Rc::new(RefCell::new(Vec::new()));
            // Each connection waits forever once admitted; those told to speak say so first.
            let admit = |name: &'static str, speaks: bool| {
                let ended = Rc::clone(&ended);
                Connections::admit(&connections, move |admitted| async move {
                    if speaks {
                        admitted.spoke();
                    }
                    let _noted = Noted(name, ended);
                    std::future::pending::<()>().await;
                    drop(admitted);
                })
            };
            assert!(admit("a", false));
            assert!(admit("b", true));
            tokio::task::yield_now().await;
            // Full: "a" (silent, oldest) makes room for "c"; "b" spoke and stays.
            assert!(admit("c", true));
            tokio::task::yield_now().await;
            assert_eq!(*ended.borrow(), ["a"]);
            assert_eq!(connections.open.get(), 2);
            // Every open connection spoke: the next is refused.
            assert!(!admit("d", false));
            assert_eq!(*ended.borrow(), ["a"]);
        });
    }

    /// Notes its name when dropped.
    struct Noted(&'static str, Rc<RefCell<Vec<&'static str>>>);

    impl Drop for Noted {
        fn drop(&mut self) {
            self.1.borrow_mut().push(self.0);
        }
    }

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
