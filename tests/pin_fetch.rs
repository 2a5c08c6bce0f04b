use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[test]
fn many_fetches_finish() {
    if let Ok(n) = std::env::var("W") { greenlet::config().workers(n.parse().unwrap()).apply().unwrap(); }
    greenlet::track_waits(true);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let mut c = c.unwrap();
            std::thread::spawn(move || {
                let mut buf = [0; 1024];
                let _ = c.read(&mut buf);
                std::thread::sleep(Duration::from_millis(20));
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            });
        }
    });
    for round in 0..20 {
        let gs: Vec<_> = (0..300)
            .map(|_| {
                greenlet::spawn(move || {
                    let mut s = greenlet::net::TcpStream::connect(addr).unwrap();
                    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
                    let mut resp = Vec::new();
                    s.read_to_end(&mut resp).unwrap();
                    resp.len()
                })
            })
            .collect();
        let t = Instant::now();
        for g in &gs {
            if !g.handle().join_timeout(Duration::from_secs(10)) {
                eprintln!("round {round}: hung after {:?}\n{}", t.elapsed(), greenlet::dump());
                panic!("hung");
            }
        }
        eprintln!("round {round} ok {:?} {:?}", t.elapsed(), greenlet::__pinning_stats());
    }
}
