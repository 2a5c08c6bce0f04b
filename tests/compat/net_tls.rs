//! `net::tls`: a TLS round trip with a self-signed certificate made here, and the errors for an
//! untrusted certificate and a peer that does not speak TLS.
#![cfg(feature = "tls")]

mod self_signed;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use greenlet::net::TcpStream;
use greenlet::net::tls::{TlsAcceptor, TlsConnector, rustls};
use greenlet::server::StreamServer;
use self_signed::certificate;

/// A TLS line-echo server; handshake failures are counted.
fn tls_echo(config: Arc<rustls::ServerConfig>) -> StreamServer {
    let acceptor = TlsAcceptor::from(config);
    let server = StreamServer::bind("127.0.0.1:0", move |conn: TcpStream, _| {
        let Ok(mut tls) = acceptor.accept(conn) else {
            return;
        };
        let mut line = String::new();
        if BufReader::new(&mut tls).read_line(&mut line).is_ok() {
            let _ = tls.write_all(line.to_uppercase().as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    })
    .unwrap();
    server.start().unwrap();
    server
}

#[test]
fn round_trip_with_a_self_signed_certificate() {
    let (server_cfg, client_cfg) = certificate();
    let server = tls_echo(server_cfg);
    let addr = server.local_addr();
    let connector = TlsConnector::from(client_cfg);
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let connector = connector.clone();
            greenlet::spawn(move || -> std::io::Result<String> {
                let mut tls = connector.connect("localhost", TcpStream::connect(addr)?)?;
                writeln!(tls, "hello {i}")?;
                let mut reply = String::new();
                tls.read_to_string(&mut reply)?;
                Ok(reply)
            })
        })
        .collect();
    for (i, r) in greenlet::joinall(clients).into_iter().enumerate() {
        assert_eq!(r.unwrap().unwrap(), format!("HELLO {i}\n"));
    }
    server.stop(Duration::from_secs(1));
}

#[test]
fn an_untrusted_certificate_fails_the_handshake() {
    let (server_cfg, _) = certificate();
    let server = tls_echo(server_cfg);
    let tcp = TcpStream::connect(server.local_addr()).unwrap();
    let e = TlsConnector::new().connect("localhost", tcp).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    let source = e.get_ref().map(ToString::to_string).unwrap_or_default();
    assert!(source.contains("UnknownIssuer"), "{e}: {source}");
    server.stop(Duration::from_secs(1));
}

#[test]
fn a_plaintext_peer_is_invalid_data_and_a_bad_name_is_invalid_input() {
    let (server_cfg, client_cfg) = certificate();
    let acceptor = TlsAcceptor::from(server_cfg);
    let listener = greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let g = greenlet::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    });
    let (conn, _) = listener.accept().unwrap();
    assert_eq!(
        acceptor.accept(conn).unwrap_err().kind(),
        ErrorKind::InvalidData
    );
    g.get().unwrap();

    let tcp = TcpStream::connect(addr).unwrap_or_else(|_| {
        let l = greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
        TcpStream::connect(l.local_addr().unwrap()).unwrap()
    });
    let e = TlsConnector::from(client_cfg)
        .connect("not a name!", tcp)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}
