//! `http::Client` over https, with a self-signed certificate made in the test.
#![cfg(feature = "tls")]

mod self_signed;

use std::io::{Read, Write};
use std::time::Duration;

use greenlet::http::{Client, Error};
use greenlet::net::TcpStream;
use greenlet::net::tls::TlsAcceptor;
use greenlet::server::StreamServer;

#[test]
fn https_round_trip_and_untrusted_certificate() {
    let (server_cfg, _, cert) = self_signed::certificate_der();
    let acceptor = TlsAcceptor::from(server_cfg);
    let server = StreamServer::bind("127.0.0.1:0", move |conn: TcpStream, _| {
        let Ok(mut tls) = acceptor.accept(conn) else {
            return;
        };
        let mut buf = [0; 4096];
        if tls.read(&mut buf).is_ok() {
            let _ = tls.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecret",
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    })
    .unwrap();
    server.start().unwrap();
    let url = format!("https://localhost:{}/", server.local_addr().port());

    let client = Client::builder().root_certificate(cert).build();
    let u = url.clone();
    let g = greenlet::spawn(move || -> Result<String, Error> {
        Ok(client.get(&u)?.body_mut().read_to_string()?)
    });
    assert_eq!(g.get().unwrap().unwrap(), "secret");

    // Mozilla's roots do not trust the test's certificate.
    let e = greenlet::http::get(&url).unwrap_err();
    assert!(!matches!(e, Error::Status(_)), "{e:?}");
    server.stop(Duration::from_secs(1));
}
