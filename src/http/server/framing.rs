//! How a request's body is delimited (RFC 9112 §6), checked as hyper and nginx check it, and
//! the `chunked` coding's size lines.

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Length(u64),
    Chunked,
}

/// What the head says about the connection and the body, beside the framing.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct HeadFacts {
    /// `Connection: close`, or HTTP/1.0 without `keep-alive`.
    pub close: bool,
    /// `Connection: upgrade` with an `Upgrade` header.
    pub upgrade: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// An `Expect` other than `100-continue` (answered 417).
    pub expect_other: bool,
}

/// The body's framing from the head's headers, or `None` for a request to refuse with 400
/// (RFC 9112 §6.3, §3.2; as hyper and nginx refuse them):
/// - `Content-Length` must be `1*DIGIT` (no sign, no inner spaces, no other whitespace than
///   the optional spaces and tabs around it) and fit in `u64`; several must all be equal
///   (two that differ are a request-smuggling vector: a front end using the other one reads a
///   different body);
/// - `Transfer-Encoding` together with `Content-Length` is refused, and so is any
///   `Transfer-Encoding` whose last coding is not `chunked` (the length could not be known),
///   or that names `chunked` twice;
/// - an HTTP/1.1 request must carry exactly one `Host`, an HTTP/1.0 one at most one.
pub(super) fn framing(headers: &[httparse::Header<'_>], version: u8) -> Option<Framing> {
    let mut length: Option<u64> = None;
    let mut coding: Option<bool> = None; // whether the last coding seen is `chunked`
    let mut hosts = 0;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value)?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            for c in h.value.split(|&b| b == b',').map(trim) {
                // `chunked` only once, and last (RFC 9112 §6.1).
                if coding == Some(true) {
                    return None;
                }
                coding = Some(c.eq_ignore_ascii_case(b"chunked"));
            }
        } else if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
    }
    let hosts_ok = if version == 1 { hosts == 1 } else { hosts <= 1 };
    if !hosts_ok || (coding.is_some() && length.is_some()) {
        return None;
    }
    match coding {
        Some(true) if version == 1 => Some(Framing::Chunked),
        // HTTP/1.0 has no chunked coding; an unknown last coding has no length.
        Some(_) => None,
        None => Some(Framing::Length(length.unwrap_or(0))),
    }
}

/// `Connection`, `Upgrade` and `Expect` as the server acts on them.
pub(super) fn facts(headers: &[httparse::Header<'_>], version: u8) -> HeadFacts {
    let (mut close, mut keep_alive, mut upgrade_token, mut upgrade_header) =
        (false, false, false, false);
    let mut facts = HeadFacts::default();
    for h in headers {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',').map(trim) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                upgrade_token |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade_header = true;
        } else if h.name.eq_ignore_ascii_case("expect") {
            if trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                // HTTP/1.0 clients do not expect an interim response (RFC 9110 §10.1.1).
                facts.expect_continue = version == 1;
            } else {
                facts.expect_other = true;
            }
        }
    }
    facts.close = close || (version == 0 && !keep_alive);
    facts.upgrade = upgrade_token && upgrade_header && version == 1;
    facts
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

/// A `Content-Length` value: `1*DIGIT` between optional spaces and tabs.
fn content_length(value: &[u8]) -> Option<u64> {
    let digits = trim(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The longest chunk-size line accepted, extensions included.
pub(super) const MAX_SIZE_LINE: usize = 4096;

/// What a chunk-size line at the start of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SizeLine {
    /// The chunk's size and the line's length with its CRLF.
    Size(u64, usize),
    /// The line is not complete yet.
    Partial,
    /// Not a chunk-size line (answered 400).
    Invalid,
}

/// Parses `chunk-size [ chunk-ext ] CRLF` (RFC 9112 §7.1): 1 to 16 hex digits, extensions
/// of visible characters, spaces and tabs (skipped: none is understood), a CRLF (a bare LF or
/// CR is refused: a front end reading it otherwise would see other chunks).
pub(super) fn size_line(buf: &[u8]) -> SizeLine {
    let digits = buf.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits > 16 {
        return SizeLine::Invalid;
    }
    if digits == buf.len() {
        return SizeLine::Partial;
    }
    if digits == 0 {
        return SizeLine::Invalid;
    }
    let mut i = digits;
    // Optional whitespace, then extensions after a ';' (RFC 9112 §7.1.1).
    while i < buf.len() && matches!(buf[i], b' ' | b'\t') {
        i += 1;
    }
    if i < buf.len() && buf[i] == b';' {
        while i < buf.len() && (buf[i].is_ascii_graphic() || matches!(buf[i], b' ' | b'\t')) {
            i += 1;
        }
    }
    if i < buf.len() && buf[i] != b'\r' {
        return SizeLine::Invalid;
    }
    if i + 1 >= buf.len() {
        return if buf.len() > MAX_SIZE_LINE {
            SizeLine::Invalid
        } else {
            SizeLine::Partial
        };
    }
    if &buf[i..i + 2] != b"\r\n" {
        return SizeLine::Invalid;
    }
    if i + 2 > MAX_SIZE_LINE {
        return SizeLine::Invalid;
    }
    // Up to 16 hex digits always fit in a u64.
    let hex = std::str::from_utf8(&buf[..digits]).unwrap_or("0");
    match u64::from_str_radix(hex, 16) {
        Ok(n) => SizeLine::Size(n, i + 2),
        Err(_) => SizeLine::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn framing_refuses_what_could_be_read_two_ways() {
        let host = h("Host", "x");
        assert_eq!(framing(&[host], 1), Some(Framing::Length(0)));
        assert_eq!(
            framing(&[host, h("Content-Length", " 5\t")], 1),
            Some(Framing::Length(5))
        );
        assert_eq!(
            framing(&[host, h("Transfer-Encoding", "gzip, chunked")], 1),
            Some(Framing::Chunked)
        );
        for bad in [
            vec![host, h("Transfer-Encoding", "chunked, gzip")],
            vec![host, h("Transfer-Encoding", "chunked, chunked")],
            vec![
                host,
                h("Transfer-Encoding", "chunked"),
                h("Transfer-Encoding", "chunked"),
            ],
            vec![
                host,
                h("Transfer-Encoding", "chunked"),
                h("Transfer-Encoding", "gzip"),
            ],
            vec![host, h("Transfer-Encoding", "xchunked")],
            vec![host, h("Transfer-Encoding", "")],
            vec![
                host,
                h("Transfer-Encoding", "chunked"),
                h("Content-Length", "5"),
            ],
            vec![host, h("Content-Length", "5"), h("Content-Length", "6")],
            vec![host, h("Content-Length", "+5")],
            vec![host, h("Content-Length", "")],
            vec![h("Content-Length", "5")],
            vec![host, host],
        ] {
            assert_eq!(framing(&bad, 1), None, "{bad:?}");
        }
        assert_eq!(framing(&[], 0), Some(Framing::Length(0)));
        assert_eq!(framing(&[h("Transfer-Encoding", "chunked")], 0), None);
    }

    #[test]
    fn facts_read_connection_tokens_and_expect() {
        let f = facts(
            &[h("Connection", "keep-alive, Upgrade"), h("Upgrade", "ws")],
            1,
        );
        assert!(f.upgrade && !f.close);
        assert!(facts(&[], 0).close);
        assert!(!facts(&[h("Connection", "Keep-Alive")], 0).close);
        assert!(facts(&[h("Connection", "foo, close")], 1).close);
        assert!(facts(&[h("Expect", "100-Continue")], 1).expect_continue);
        assert!(!facts(&[h("Expect", "100-continue")], 0).expect_continue);
        assert!(facts(&[h("Expect", "200-ok")], 1).expect_other);
    }

    #[test]
    fn size_lines() {
        assert_eq!(size_line(b"5\r\nhello"), SizeLine::Size(5, 3));
        assert_eq!(
            size_line(b"1aF;name=\"v\" ; x\r\n"),
            SizeLine::Size(0x1af, 18)
        );
        assert_eq!(size_line(b"0 \r\n"), SizeLine::Size(0, 4));
        assert_eq!(size_line(b"5"), SizeLine::Partial);
        assert_eq!(size_line(b"5\r"), SizeLine::Partial);
        assert_eq!(size_line(b"5;ext"), SizeLine::Partial);
        for bad in [
            &b"\r\n"[..],
            b"x\r\n",
            b"5\n",
            b"5\rx",
            b"-5\r\n",
            b"+5\r\n",
            b"5 5\r\n",
            b"5;\x00\r\n",
            b"11111111111111111\r\n",
        ] {
            assert_eq!(size_line(bad), SizeLine::Invalid, "{bad:?}");
        }
        let long = format!("5;{}", "x".repeat(MAX_SIZE_LINE));
        assert_eq!(size_line(long.as_bytes()), SizeLine::Invalid);
    }
}
