//! Request and response headers across the proxy: hop-by-hop headers removed, `X-Forwarded-*`
//! and `X-Real-IP` set. The Host header and the path reach the backend unchanged.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use rustls::pki_types::CertificateDer;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the ones older agents still send). `Upgrade` is
/// one too: a switch of protocols is forwarded by setting it again.
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    // The h2c upgrade's settings: connection-specific (RFC 9113 §3.2.1's predecessor, RFC 7540).
    HeaderName::from_static("http2-settings"),
];

/// What the forwarded headers say about a client connection, computed once per connection.
#[derive(Debug)]
pub struct Client {
    peer_ip: std::net::IpAddr,
    tls: bool,
    /// The TLSOption its handshake was served with (`namespace/name`); `None` for fjord's own
    /// TLS settings or plain HTTP.
    tls_policy: Option<Box<str>>,
    /// The certificates the client presented in its handshake (a TLSOption's `clientAuth`),
    /// its own first; empty when it presented none.
    certificates: Box<[CertificateDer<'static>]>,
    /// Whether this peer's `X-Forwarded-*` headers are kept and appended to.
    trusted: bool,
    ip: HeaderValue,
    port: HeaderValue,
    proto: HeaderValue,
}

impl Client {
    /// `peer` is the client's address, `local_port` the port it connected to.
    pub fn new(
        peer: SocketAddr,
        local_port: u16,
        tls: bool,
        trusted_ips: &[IpNet],
        trust_all: bool,
    ) -> Self {
        let ip = peer.ip().to_canonical();
        Self {
            peer_ip: ip,
            tls,
            tls_policy: None,
            certificates: Box::default(),
            trusted: trust_all || trusted_ips.iter().any(|net| net.contains(&ip)),
            ip: header_value(&ip.to_string()),
            port: header_value(&local_port.to_string()),
            proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
        }
    }
}

impl Client {
    /// The peer's address (IPv4-mapped IPv6 shown as IPv4).
    pub fn ip(&self) -> std::net::IpAddr {
        self.peer_ip
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether this peer's `X-Forwarded-*` headers are trusted.
    pub fn is_trusted(&self) -> bool {
        self.trusted
    }

    /// The TLSOption its handshake was served with, if one.
    pub fn tls_policy(&self) -> Option<&str> {
        self.tls_policy.as_deref()
    }

    /// The certificates the client presented, its own first.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The client of a handshake served with TLSOption `name`, in which it presented
    /// `certificates`.
    pub fn with_handshake(
        mut self,
        name: Option<Box<str>>,
        certificates: Box<[CertificateDer<'static>]>,
    ) -> Self {
        self.tls_policy = name;
        self.certificates = certificates;
        self
    }
}

fn header_value(s: &str) -> HeaderValue {
    // IPs and port numbers are always valid header values.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Prepares a request's headers for the backend. `host` is the request's host (from the URI
/// authority or the Host header); `upgrade` is the protocol the client asks to switch to, if any.
pub fn request(
    headers: &mut HeaderMap,
    client: &Client,
    host: Option<&HeaderValue>,
    upgrade: Option<HeaderValue>,
) {
    remove_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }

    if client.trusted {
        // Append to the chain the trusted peer sent.
        let chain = headers
            .get(&X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(|v| format!("{v}, {}", client.ip.to_str().unwrap_or_default()));
        match chain.and_then(|c| HeaderValue::from_str(&c).ok()) {
            Some(v) => headers.insert(X_FORWARDED_FOR.clone(), v),
            None => headers.insert(X_FORWARDED_FOR.clone(), client.ip.clone()),
        };
        set_if_absent(headers, &X_REAL_IP, client.ip.clone());
        set_if_absent(headers, &X_FORWARDED_PROTO, client.proto.clone());
        set_if_absent(headers, &X_FORWARDED_PORT, client.port.clone());
        if let Some(h) = host {
            set_if_absent(headers, &X_FORWARDED_HOST, h.clone());
        }
    } else {
        headers.insert(X_FORWARDED_FOR.clone(), client.ip.clone());
        headers.insert(X_REAL_IP.clone(), client.ip.clone());
        headers.insert(X_FORWARDED_PROTO.clone(), client.proto.clone());
        headers.insert(X_FORWARDED_PORT.clone(), client.port.clone());
        match host {
            Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
}

fn set_if_absent(headers: &mut HeaderMap, name: &HeaderName, value: HeaderValue) {
    if !headers.contains_key(name) {
        headers.insert(name.clone(), value);
    }
}

/// Joins an HTTP/2 request's `cookie` fields into one, as RFC 9113 §8.2.3 asks before a
/// request goes out over HTTP/1.1, where a backend may read only the first of several.
pub fn join_cookies(headers: &mut HeaderMap) {
    // No name with two values, so no two cookies: known without hashing a name.
    if headers.len() == headers.keys_len() {
        return;
    }
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if cookies.next().is_none() || cookies.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for (i, cookie) in headers.get_all(header::COOKIE).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(cookie.as_bytes());
    }
    // Joined valid values with "; " are a valid value.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// Prepares a backend's response headers for the client. A `101 Switching Protocols` keeps its
/// `Connection` and `Upgrade`: they are the handshake.
pub fn response(headers: &mut HeaderMap, switching_protocols: bool) {
    if !switching_protocols {
        remove_hop_by_hop(headers);
    }
}

/// The protocol a request asks to upgrade to (`Connection: upgrade` plus `Upgrade: X`), when
/// it is one fjord passes on: WebSocket. Any other, `h2c` above all (HTTP/2 to the backend
/// would carry requests no route or middleware saw), is not passed on: the request is served
/// as the HTTP/1.1 request it also is, as RFC 9110 §7.8 lets a server do.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !wants {
        return None;
    }
    headers
        .get(header::UPGRADE)
        .filter(|p| p.as_bytes().eq_ignore_ascii_case(b"websocket"))
        .cloned()
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names the message has, rather than a removal (a hash and a probe) for
    // each name it might have: most have none of them, or only `Connection`.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = hop_by_hop(name) {
            present[i] = true;
        }
    }
    if present == [false; HOP_BY_HOP.len()] {
        return;
    }
    // Headers the Connection header names are hop-by-hop too. Its usual tokens, `keep-alive`
    // and `close`, name no other header, so they are not made into names to remove; a value
    // that is just one of them (nearly every backend's) is not even split.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .map(HeaderValue::as_bytes)
        .filter(|v| !v.eq_ignore_ascii_case(b"keep-alive") && !v.eq_ignore_ascii_case(b"close"))
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| {
            // fjord's own request id is set before this and must reach the backend whatever
            // the client names in Connection.
            !t.eq_ignore_ascii_case("close")
                && !t.eq_ignore_ascii_case("x-request-id")
                && !HOP_BY_HOP
                    .iter()
                    .any(|h| t.eq_ignore_ascii_case(h.as_str()))
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
}

/// Where `name` is in [`HOP_BY_HOP`], if it is there. A match on the name compiles to a switch
/// on its length and one comparison, where comparing it with each entry in turn cost about
/// 200 instructions per header.
fn hop_by_hop(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        "http2-settings" => 9,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_finds_each_name_at_its_place_and_no_other() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop(name), Some(i), "{name}");
        }
        for name in [
            "host",
            "user-agent",
            "x-forwarded-for",
            "content-length",
            "tee",
        ] {
            assert_eq!(hop_by_hop(&HeaderName::from_static(name)), None, "{name}");
        }
    }

    fn client(trusted: bool) -> Client {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = if trusted {
            "10.1.2.3:5555"
        } else {
            "192.0.2.7:5555"
        };
        Client::new(peer.parse().unwrap(), 8080, false, &nets, false)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn untrusted_clients_cannot_forge_forwarded_headers() {
        let mut h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-real-ip", "6.6.6.6")]);
        let host = HeaderValue::from_static("shop.example.com");
        request(&mut h, &client(false), Some(&host), None);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-port"], "8080");
        assert_eq!(h["x-forwarded-host"], "shop.example.com");
    }

    #[test]
    fn trusted_peers_chain_is_appended_to() {
        let mut h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        request(&mut h, &client(true), None, None);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-real-ip"], "10.1.2.3");
    }

    #[test]
    fn hop_by_hop_headers_go_but_an_upgrade_stays() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        let up = upgrade_protocol(&h);
        assert_eq!(up, None, "Connection does not name upgrade");
        request(&mut h, &client(false), None, None);
        for gone in ["connection", "x-secret", "keep-alive", "te", "upgrade"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h["accept"], "*/*");

        // Without a Connection header, the fixed hop-by-hop names still go.
        let mut h = headers(&[("proxy-authorization", "Basic eA=="), ("accept", "*/*")]);
        request(&mut h, &client(false), None, None);
        assert!(!h.contains_key("proxy-authorization"));
        assert_eq!(h["accept"], "*/*");

        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let up = upgrade_protocol(&h);
        request(&mut h, &client(false), None, up);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn connection_cannot_strip_the_request_id() {
        let mut h = headers(&[
            ("connection", "x-request-id, x-secret"),
            ("x-request-id", "abc"),
            ("x-secret", "1"),
        ]);
        request(&mut h, &client(false), None, None);
        assert_eq!(h["x-request-id"], "abc");
        assert!(!h.contains_key("x-secret"));
    }

    #[test]
    fn http2_cookie_fields_are_joined_in_order() {
        let mut h = HeaderMap::new();
        for c in ["a=1", "b=2", "c=3"] {
            h.append(header::COOKIE, HeaderValue::from_static(c));
        }
        join_cookies(&mut h);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);

        let mut one = headers(&[("cookie", "a=1")]);
        join_cookies(&mut one);
        assert_eq!(one["cookie"], "a=1");
    }
}
