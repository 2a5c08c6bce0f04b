//! Loopback servers that answer after a delay, on plain threads (one per connection or
//! datagram): they are not under test, and a row that blocks its workers must not also stall
//! the server it waits for.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// An accept loop on a plain thread that hands every connection to `handle` on a thread of
/// its own. Stops on drop.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `listener` with `handle`.
    pub fn serve<H>(listener: TcpListener, handle: H) -> Server
    where
        H: Fn(TcpStream) + Send + Sync + 'static,
    {
        let addr = listener.local_addr().expect("the listener's address");
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let stopping = Arc::clone(&stop);
        let acceptor = thread::Builder::new()
            .name("compat server".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let handle = Arc::clone(&handle);
                    thread::spawn(move || handle(conn));
                }
            })
            .expect("spawn the server's thread");
        Server {
            addr,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Serves a fresh loopback listener with `handle`.
    pub fn start<H>(handle: H) -> Server
    where
        H: Fn(TcpStream) + Send + Sync + 'static,
    {
        Server::serve(TcpListener::bind("127.0.0.1:0").expect("bind"), handle)
    }

    /// An HTTP/1.1 server: reads a request head, waits `delay`, answers `200 OK` with the body
    /// `hello`, and closes.
    pub fn http(delay: Duration) -> Server {
        Server::start(move |mut conn| {
            if read_head(&mut conn).is_ok() {
                thread::sleep(delay);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\
                      Connection: close\r\n\r\nhello",
                );
            }
        })
    }

    /// A websocket server: after the handshake, waits for one message, then echoes it after
    /// `delay` and reads until the client closes.
    pub fn websocket_echo(delay: Duration) -> Server {
        Server::start(move |conn| {
            let Ok(mut ws) = tungstenite::accept(conn) else {
                return;
            };
            if let Ok(message) = ws.read() {
                thread::sleep(delay);
                if ws.send(message).is_ok() {
                    while ws.read().is_ok() {}
                }
            }
        })
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Reads until the end of an HTTP request head (a blank line).
pub fn read_head(conn: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    Ok(head)
}

/// A UDP server that sends every datagram back to its sender after a delay.
pub struct UdpEcho {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    receiver: Option<JoinHandle<()>>,
}

impl UdpEcho {
    pub fn start(delay: Duration) -> UdpEcho {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("the socket's address");
        // Checks `stop` at least this often.
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("a read time-out");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let receiver = thread::Builder::new()
            .name("compat udp".into())
            .spawn(move || {
                let mut buf = [0; 1500];
                while !stopping.load(Ordering::Acquire) {
                    let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let datagram = buf[..n].to_vec();
                    let Ok(sender) = socket.try_clone() else {
                        continue;
                    };
                    thread::spawn(move || {
                        thread::sleep(delay);
                        let _ = sender.send_to(&datagram, peer);
                    });
                }
            })
            .expect("spawn the server's thread");
        UdpEcho {
            addr,
            stop,
            receiver: Some(receiver),
        }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(receiver) = self.receiver.take() {
            let _ = receiver.join();
        }
    }
}
