//! The `ws_echo` example against tungstenite's client: a WebSocket session over
//! `http::upgrade`, many at once, and what is not a WebSocket handshake.

#[path = "examples/ws_echo.rs"]
#[allow(dead_code)]
mod ws_echo;

#[path = "../support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::time::Duration;

use greenlet::net::TcpStream;
use support::watchdog::bounded;
use support::{http_raw as raw, status_of};
use tungstenite::Message;

const SESSIONS: usize = 100;
const MESSAGES: usize = 20;

/// One session: `MESSAGES` text and binary messages echoed, a ping answered, a clean close.
fn session(addr: std::net::SocketAddr, n: usize) -> Result<usize, tungstenite::Error> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (mut ws, response) =
        tungstenite::client(format!("ws://{addr}/echo"), stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => unreachable!("a blocking stream"),
        })?;
    assert_eq!(response.status(), 101);
    let mut echoed = 0;
    for i in 0..MESSAGES {
        let msg = if i % 2 == 0 {
            Message::text(format!("session {n} message {i}"))
        } else {
            Message::binary(vec![i as u8; 1000 * i])
        };
        ws.send(msg.clone())?;
        loop {
            match ws.read()? {
                Message::Pong(_) => continue,
                got => {
                    assert_eq!(got, msg);
                    break;
                }
            }
        }
        echoed += 1;
    }
    ws.send(Message::Ping(vec![1, 2, 3].into()))?;
    assert_eq!(ws.read()?, Message::Pong(vec![1, 2, 3].into()));
    ws.close(None)?;
    while ws.read().is_ok() {}
    Ok(echoed)
}

#[test]
fn a_hundred_websocket_sessions_echo_at_once() {
    bounded("ws sessions", Duration::from_secs(60), || {
        let server = ws_echo::start("127.0.0.1:0").unwrap();
        let addr = server.local_addr();
        let sessions: Vec<_> = (0..SESSIONS)
            .map(|n| greenlet::spawn(move || session(addr, n)))
            .collect();
        let echoed: usize = greenlet::joinall(sessions)
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .sum();
        assert_eq!(echoed, SESSIONS * MESSAGES);
        assert_eq!(
            server.stop(Duration::from_secs(5)),
            0,
            "every session ended"
        );
    });
}

#[test]
fn what_is_not_a_websocket_handshake_gets_400_or_426() {
    bounded("ws refusals", Duration::from_secs(30), || {
        let server = ws_echo::start("127.0.0.1:0").unwrap();
        let a = server.local_addr();
        let got = raw(a, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(status_of(&got), 400, "{got}");
        // A key but no `Connection: upgrade`: `upgrade` refuses, the handler answers 400.
        let got = raw(
            a,
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status_of(&got), 400, "{got}");
        let got = raw(
            a,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status_of(&got), 426, "{got}");
        // The RFC 6455 §1.3 example handshake, and a frame sent with it (read by the server
        // before the upgrade, handed over with the connection).
        let mut hello = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
        // A masked text frame "hi" (FIN, opcode 1, mask key 0), then a close frame.
        hello.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i', 0x88, 0x80, 0, 0, 0, 0]);
        let mut s = TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&hello).unwrap();
        let mut bytes = Vec::new();
        let _ = s.read_to_end(&mut bytes);
        let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&bytes[..split]);
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{head}"
        );
        assert!(
            head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{head}"
        );
        let frames = &bytes[split..];
        assert_eq!(
            &frames[..4],
            &[0x81, 0x02, b'h', b'i'],
            "the frame was echoed"
        );
        server.stop(Duration::from_secs(1));
    });
}
