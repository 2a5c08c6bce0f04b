//! Both directions of the async bridge (feature `tokio`), on loopback, ending by itself.
//!
//! - An **async server** (hyper on tokio) whose handler awaits a greenlet: the greenlet looks
//!   the item up with plain blocking-style code (a `greenlet::net::TcpStream` to a small
//!   line-protocol "inventory" service that answers after 50 ms).
//! - **Greenlets** that call that server with an async client (reqwest) and sleep with
//!   `tokio::time::sleep`, both through `greenlet::block_on`: each parks only itself.
//!
//! 100 greenlets each make one request and one 20 ms sleep; together they take about one
//! request plus one sleep, not 100 of each.
//!
//! Run with: `cargo run --release --features tokio --example async_bridge`

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use greenlet::net::{TcpListener, TcpStream};

/// The inventory service: blocking-style greenlets, one per connection; each line in gets
/// `<line> in stock` back after 50 ms.
fn start_inventory() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(greenlet::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            drop(greenlet::spawn(move || -> io::Result<()> {
                let mut writer = conn.try_clone()?;
                for line in BufReader::new(conn).lines() {
                    greenlet::sleep(Duration::from_millis(50));
                    writeln!(writer, "{} in stock", line?)?;
                }
                Ok(())
            }));
        }
    }));
    Ok(addr)
}

/// Blocking-style lookup, run in a greenlet.
fn lookup(inventory: SocketAddr, item: &str) -> io::Result<String> {
    let mut conn = TcpStream::connect(inventory)?;
    writeln!(conn, "{item}")?;
    let mut answer = String::new();
    BufReader::new(conn).read_line(&mut answer)?;
    Ok(answer.trim_end().to_owned())
}

/// The async front end: hyper, whose handler awaits a greenlet.
async fn serve(listener: tokio::net::TcpListener, inventory: SocketAddr) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                let item = req.uri().path().trim_start_matches('/').to_owned();
                // Blocking-style code in a greenlet, awaited without blocking tokio's thread.
                let answer = greenlet::spawn(move || lookup(inventory, &item)).await;
                let body = match answer {
                    Ok(Ok(text)) => text,
                    Ok(Err(e)) => format!("lookup failed: {e}"),
                    Err(e) => format!("lookup greenlet failed: {e}"),
                };
                Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(body))))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                eprintln!("connection error: {e}");
            }
        });
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let inventory = start_inventory()?;
    let tokio = greenlet::bridge::handle();
    let listener = greenlet::block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let front = listener.local_addr()?;
    let server = tokio.spawn(serve(listener, inventory));
    println!("hyper front end on http://{front}, inventory service on {inventory}");

    let client = reqwest::Client::new();
    let start = Instant::now();
    let gs: Vec<_> = (0..100)
        .map(|i| {
            let client = client.clone();
            greenlet::spawn(move || -> Result<String, reqwest::Error> {
                // Async crates from blocking-style code: each call parks this greenlet only.
                let text = greenlet::block_on(async {
                    client
                        .get(format!("http://{front}/item-{i}"))
                        .send()
                        .await?
                        .text()
                        .await
                })?;
                greenlet::block_on(tokio::time::sleep(Duration::from_millis(20)));
                Ok(text)
            })
        })
        .collect();
    let answers: Vec<_> = greenlet::joinall(gs);
    let took = start.elapsed();
    let ok = answers.iter().filter(|a| matches!(a, Ok(Ok(_)))).count();
    if let Some(Ok(Ok(first))) = answers.first() {
        println!("first answer: {first:?}");
    }
    println!(
        "{ok} of {} greenlets got their answer (50 ms lookup + 20 ms sleep each) in {:.1} ms",
        answers.len(),
        took.as_secs_f64() * 1e3
    );
    server.abort();
    if ok != answers.len() {
        return Err(format!("{} requests failed", answers.len() - ok).into());
    }
    Ok(())
}
