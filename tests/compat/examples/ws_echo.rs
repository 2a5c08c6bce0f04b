//! A WebSocket echo server: `http::Server` answers the handshake with 101 and hands the
//! connection to `tungstenite`, in the same greenlet, which then echoes every message.
//!
//! Run with: `cargo run --release --example ws_echo [-- --port 9001 --secs 30]`, then
//! connect any WebSocket client to `ws://127.0.0.1:9001/`.

use std::io;
use std::time::Duration;

use greenlet::http::{Body, Request, Response, Server, StatusCode, header, upgrade};
use greenlet::net::ToSocketAddrs;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::{Error, Message};

#[path = "../../../examples/common/mod.rs"]
mod common;

/// Starts the echo server on `addr` in the background.
pub fn start<A: ToSocketAddrs>(addr: A) -> io::Result<Server> {
    let server = Server::bind(addr, handle)?;
    server.start()?;
    Ok(server)
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r
}

/// One request: a WebSocket handshake becomes an echo session; anything else gets 400 (or 426
/// for an unsupported WebSocket version).
fn handle(mut req: Request<Body>) -> Response<Body> {
    let h = req.headers();
    let wants_ws = h
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).filter(|_| wants_ws) else {
        return plain(StatusCode::BAD_REQUEST, "a WebSocket endpoint\n");
    };
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        let mut r = plain(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only\n");
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            header::HeaderValue::from_static("13"),
        );
        return r;
    }
    let switch = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .body(())
        .expect("valid header values");
    let conn = match upgrade(&mut req, switch) {
        Ok(conn) => conn,
        Err(e) => {
            log::debug!("upgrade refused: {e}");
            return plain(StatusCode::BAD_REQUEST, "bad upgrade\n");
        }
    };
    // A session may stay quiet for longer than an HTTP request would.
    let _ = conn
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(300)));
    let mut ws = WebSocket::from_raw_socket(conn, Role::Server, None);
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(msg).is_err() {
                    break;
                }
            }
            // Pings are answered by tungstenite; a close is answered, then reads end.
            Ok(_) => {}
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => break,
            Err(e) => {
                log::debug!("websocket session ended: {e}");
                break;
            }
        }
    }
    // Not sent: the connection was taken over.
    Response::new(Body::empty())
}

fn main() -> io::Result<()> {
    env_logger::init();
    let (port, secs) = (
        common::num("--port", 9001) as u16,
        common::num("--secs", 30),
    );
    let server = start(("127.0.0.1", port))?;
    println!("listening on ws://{}", server.local_addr());
    if secs == 0 {
        return server.serve_forever();
    }
    greenlet::sleep(Duration::from_secs(secs));
    server.stop(Duration::from_secs(1));
    Ok(())
}
