//! What the scenarios drive the app under test with: a world of an
//! instrumented store, a clock and a key; an HTTP client; and readers of
//! what the server answered.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::header::{COOKIE, SET_COOKIE};
use session_core::{clock::ManualClock, manager::SessionManagerBuilder, Key, SessionManager};

use super::{RunningApp, TestApp};
use crate::{
    instrumented::InstrumentedStore,
    store::{unique_prefix, StoreFactory},
};

/// What the server answered.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: String,
    pub(super) set_cookies: Vec<String>,
    /// Every header, names in lower case, in order.
    pub(super) headers: Vec<(String, String)>,
}

impl Reply {
    /// The `name=value` pair of the one `Set-Cookie`, if any.
    pub(super) fn cookie(&self) -> Option<String> {
        assert!(
            self.set_cookies.len() <= 1,
            "more than one Set-Cookie: {:?}",
            self.set_cookies
        );
        self.set_cookies.first().map(|header| {
            header
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
    }

    /// The cookie this reply issued, failing the test if it issued none or a
    /// removal.
    pub(super) fn issued(&self) -> String {
        let cookie = self
            .cookie()
            .unwrap_or_else(|| panic!("expected a session cookie: {self:?}"));
        assert!(
            !self.is_removal(),
            "expected a session cookie, got a removal: {self:?}"
        );
        cookie
    }

    pub(super) fn is_removal(&self) -> bool {
        self.set_cookies
            .iter()
            .any(|header| header.contains("Max-Age=0"))
    }

    /// The values of header `name` (lower case).
    pub(super) fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The `Max-Age` of the one `Set-Cookie`, in seconds, if it has one.
    pub(super) fn max_age(&self) -> Option<u64> {
        let cookie = self.set_cookies.first()?;
        cookie.split(';').find_map(|attribute| {
            let (name, value) = attribute.trim().split_once('=')?;
            name.eq_ignore_ascii_case("max-age")
                .then(|| value.parse().ok())
                .flatten()
        })
    }

    pub(super) fn assert_ok(&self, body: &str) {
        assert_eq!((self.status, self.body.as_str()), (200, body), "{self:?}");
    }
}

/// One scenario's world: a store that counts calls, a clock that moves on
/// command, a signing key, and an HTTP client.
pub(super) struct World<'a> {
    pub(super) app: &'a dyn TestApp,
    pub(super) store: Arc<InstrumentedStore>,
    pub(super) clock: ManualClock,
    pub(super) key: Key,
    pub(super) client: reqwest::Client,
}

impl<'a> World<'a> {
    pub(super) async fn new(app: &'a dyn TestApp, factory: &dyn StoreFactory) -> Self {
        Self {
            app,
            store: Arc::new(InstrumentedStore::new(
                factory.store(&unique_prefix()).await,
            )),
            clock: ManualClock::starting_now(),
            key: Key::generate(),
            client: client(false),
        }
    }

    /// A manager over this world's store and clock, signing with its key.
    pub(super) fn manager(&self) -> SessionManagerBuilder {
        SessionManager::builder(Arc::clone(&self.store), self.key.clone())
            .with_clock(self.clock.clone())
    }

    pub(super) async fn serve(&self, manager: SessionManagerBuilder) -> RunningApp {
        self.app
            .serve(manager.build().expect("scenario config is valid"))
            .await
    }

    pub(super) async fn serve_default(&self) -> RunningApp {
        self.serve(self.manager()).await
    }

    /// Serves with both timeouts set, for the scenarios that keep a session
    /// busy until the absolute timeout ends it.
    pub(super) async fn serve_with_timeouts(
        &self,
        idle: Duration,
        absolute: Duration,
    ) -> RunningApp {
        self.serve(
            self.manager()
                .with_idle_timeout(idle)
                .with_absolute_timeout(absolute),
        )
        .await
    }

    pub(super) async fn get(&self, app: &RunningApp, path: &str, cookie: Option<&str>) -> Reply {
        let mut request = self.client.get(format!("http://{}{path}", app.addr()));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        send(request).await
    }

    /// GETs `path` with extra request headers (a session token header).
    pub(super) async fn get_with(
        &self,
        app: &RunningApp,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.get(format!("http://{}{path}", app.addr()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        send(request).await
    }
}

pub(super) fn client(cookie_jar: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(cookie_jar)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client builds")
}

pub(super) async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request
        .send()
        .await
        .expect("request reaches the test server");
    let status = response.status().as_u16();
    let set_cookies = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().expect("Set-Cookie is ASCII").to_owned())
        .collect();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response.text().await.expect("body reads");
    Reply {
        status,
        body,
        set_cookies,
        headers,
    }
}

/// A `GET` of `path` with `cookie` as the raw bytes of its `Cookie`
/// header, over a fresh connection. Raw bytes on a socket: an HTTP client
/// library would refuse to send some hostile cookies (a null byte), and an
/// attacker's would not. Bounded by a 10 s timeout. Every failure names
/// `what` was sent.
pub(super) async fn raw_get(addr: SocketAddr, path: &str, cookie: &[u8], what: &str) -> Reply {
    raw_get_with(addr, path, &[b"Cookie: ", cookie, b"\r\n"].concat(), what).await
}

/// [`raw_get`] with `header_lines` as the raw bytes of any request header
/// lines, each ending in CRLF (a token header, repeated headers).
pub(super) async fn raw_get_with(
    addr: SocketAddr,
    path: &str,
    header_lines: &[u8],
    what: &str,
) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n").into_bytes();
        request.extend_from_slice(header_lines);
        request.extend_from_slice(b"Connection: close\r\n\r\n");
        stream.write_all(&request).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("{what}: the server did not answer {path} within 10 s"))
        .unwrap_or_else(|err| {
            panic!("{what}: the server dropped the connection instead of answering {path}: {err}")
        });
    assert!(
        !response.is_empty(),
        "{what}: the server closed the connection without answering {path} (did it panic?)"
    );
    let text = String::from_utf8_lossy(&response);
    parse_response(&text)
        .unwrap_or_else(|| panic!("{what}: not an HTTP response to {path}: {text:?}"))
}

/// Reads an HTTP/1.1 response: its status, its `Set-Cookie` headers, and
/// its body, whole or chunked; `None` when it is not one.
fn parse_response(text: &str) -> Option<Reply> {
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())?;
    let mut set_cookies = Vec::new();
    let mut headers = Vec::new();
    let mut chunked = false;
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        let value = value.trim();
        headers.push((name.to_ascii_lowercase(), value.to_owned()));
        if name.eq_ignore_ascii_case("set-cookie") {
            set_cookies.push(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Some(Reply {
        status,
        body,
        set_cookies,
        headers,
    })
}

/// The body of a chunked response, or `None` when it is cut short. Each
/// chunk consumes its size line, so the loop ends within `body.len()` turns.
fn dechunk(mut body: &str) -> Option<String> {
    let mut whole = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(whole);
        }
        whole.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

pub(super) fn session_id_of(cookie: &str) -> &str {
    let value = cookie.split_once('=').map_or("", |(_, value)| value);
    value.split('.').next().unwrap_or_default()
}
