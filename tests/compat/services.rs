//! The real servers some rows need: `redis-server`, and a PostgreSQL cluster made with
//! `initdb` in a temporary directory. Each starts once per test binary, on a free loopback
//! port, the first time a row asks for it, unless the environment names one to use:
//! `GREENLET_TEST_REDIS=127.0.0.1:6379`, `GREENLET_TEST_POSTGRES="host=127.0.0.1 port=5432
//! user=postgres"` (a libpq connection string).
//!
//! The harness ends the process without running the destructors of statics, so the servers
//! are not stopped by a guard: each is started with `PR_SET_PDEATHSIG`, from a thread that
//! lives as long as the process (the signal follows the *thread* that forked). When the test
//! binary exits, however it exits, redis-server gets `SIGTERM`; PostgreSQL runs under a small
//! `sh` that gets it, stops the server (fast shutdown) and removes the cluster's directory.
//! As root (CI), `initdb` and `postgres`, which refuse to run as root, run as `nobody`.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to accept its first connection.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// `host:port` of a redis server; panics, saying how to get one, if there is none.
pub fn redis() -> &'static str {
    static ADDR: OnceLock<Result<String, String>> = OnceLock::new();
    let addr = ADDR.get_or_init(|| match std::env::var("GREENLET_TEST_REDIS") {
        Ok(addr) => Ok(addr),
        Err(_) => retry(start_redis),
    });
    match addr {
        Ok(addr) => addr,
        Err(e) => panic!("no redis server for this row: {e}"),
    }
}

/// A libpq connection string for a PostgreSQL server (user `postgres`, trust authentication);
/// panics, saying how to get one, if there is none.
pub fn postgres() -> &'static str {
    static CONNINFO: OnceLock<Result<String, String>> = OnceLock::new();
    let conninfo = CONNINFO.get_or_init(|| match std::env::var("GREENLET_TEST_POSTGRES") {
        Ok(conninfo) => Ok(conninfo),
        Err(_) => retry(start_postgres),
    });
    match conninfo {
        Ok(conninfo) => conninfo,
        Err(e) => panic!("no PostgreSQL server for this row: {e}"),
    }
}

/// Up to three tries: the free port picked may be taken by someone else meanwhile.
fn retry(start: fn() -> Result<String, String>) -> Result<String, String> {
    let mut errors = Vec::new();
    for _ in 0..3 {
        match start() {
            Ok(addr) => return Ok(addr),
            Err(e) => errors.push(e),
        }
    }
    errors.dedup();
    Err(errors.join("\n---\n"))
}

fn start_redis() -> Result<String, String> {
    let bin = on_path("redis-server").ok_or(
        "`redis-server` is not on PATH: install it (`apt-get install -y redis-server`; \
         .ci/run does), or set GREENLET_TEST_REDIS=host:port",
    )?;
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .current_dir(std::env::temp_dir());
    let mut server = Started::spawn(cmd, None)?;
    let addr = format!("127.0.0.1:{port}");
    server.wait_ready("redis-server", || {
        let mut s = TcpStream::connect(&addr)?;
        s.write_all(b"PING\r\n")?;
        let mut pong = [0; 7];
        s.read_exact(&mut pong)?;
        match &pong {
            b"+PONG\r\n" => Ok(()),
            _ => Err(io::Error::other(
                String::from_utf8_lossy(&pong).into_owned(),
            )),
        }
    })?;
    Ok(addr)
}

fn start_postgres() -> Result<String, String> {
    let bindir = postgres_bindir()?;
    let dir = std::env::temp_dir().join(format!(
        "greenlet-compat-pg-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let user = if is_root() { Some(nobody()?) } else { None };
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {} to nobody: {e}", dir.display()))?;
    }
    let data = dir.join("data");

    let mut initdb = Command::new(bindir.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
        .args(["--locale=C", "--no-instructions"])
        .current_dir(&dir);
    as_user(&mut initdb, user);
    let out = initdb.output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!(
                "initdb failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("cannot run initdb: {e}"));
        }
    };
    drop(out);

    let port = free_port();
    // `sh DIR postgres ARGS…`: runs the server, and on SIGTERM (our death) or its exit stops
    // it and removes DIR.
    let script = r#"dir=$1; shift
trap 'kill -INT $pid 2>/dev/null; wait $pid; rm -rf "$dir"; exit 0' TERM
"$@" & pid=$!
wait $pid; status=$?
rm -rf "$dir"; exit $status"#;
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script, "sh"])
        .arg(&dir)
        .arg(bindir.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-c", "max_connections=200"])
        .current_dir(&dir);
    let mut server = Started::spawn(cmd, user)?;
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    server.wait_ready("postgres", || {
        crate::pq::Connection::new(&conninfo)
            .map(drop)
            .map_err(io::Error::other)
    })?;
    Ok(conninfo)
}

/// A server process started from the keeper thread, its output collected for error messages.
struct Started {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Started {
    fn spawn(mut cmd: Command, user: Option<(u32, u32)>) -> Result<Started, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        as_user(&mut cmd, user);
        // SAFETY: the closure calls only prctl, which is async-signal-safe, and allocates
        // nothing. It runs after `as_user`'s closure: a change of user clears the setting.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = on_keeper(cmd).map_err(|e| format!("cannot start {program}: {e}"))?;
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    let mut output = output.lock().unwrap_or_else(PoisonError::into_inner);
                    if output.len() < 64 * 1024 {
                        output.push_str(&line);
                        output.push('\n');
                    }
                }
            });
        }
        Ok(Started { child, output })
    }

    /// Tries `ready` until it succeeds, the server exits, or `READY_WITHIN` passes.
    fn wait_ready(
        &mut self,
        what: &str,
        mut ready: impl FnMut() -> io::Result<()>,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let last = match ready() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                thread::sleep(Duration::from_millis(100)); // the rest of its output
                return Err(format!("{what} exited ({status}):\n{}", self.output()));
            }
            if start.elapsed() > READY_WITHIN {
                let _ = self.child.kill();
                return Err(format!(
                    "{what} not ready within {READY_WITHIN:?} ({last}):\n{}",
                    self.output()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Spawns `cmd` on the keeper thread: a thread that never ends before the process does, so
/// that the children's `PR_SET_PDEATHSIG` fires only when the process ends (the harness ends
/// each test's own thread when the test ends).
fn on_keeper(cmd: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (jobs, incoming) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("compat services".into())
            .spawn(move || {
                // Never ends: the sender lives in a static.
                for (mut cmd, reply) in incoming {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the keeper thread");
        Mutex::new(jobs)
    });
    let (reply, result) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send((cmd, reply))
        .expect("the keeper thread runs");
    result.recv().expect("the keeper thread answers")
}

/// Runs `cmd` as `user` (uid, gid), switching in the child before it executes.
fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    let Some((uid, gid)) = user else { return };
    // SAFETY: the closure calls only setgroups, setgid and setuid, which are
    // async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `nobody`'s uid and gid, from /etc/passwd.
fn nobody() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"nobody") && fields.len() > 3)
        .and_then(|fields| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
        .ok_or_else(|| {
            "running as root, and there is no user `nobody` to run PostgreSQL as (it refuses \
             root)"
                .to_owned()
        })
}

/// PostgreSQL's programs: `pg_config --bindir`, else the directory of `initdb` on PATH.
fn postgres_bindir() -> Result<PathBuf, String> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    from_pg_config
        .filter(|dir| dir.join("initdb").is_file())
        .or_else(|| on_path("initdb").and_then(|p| p.parent().map(Path::to_path_buf)))
        .ok_or_else(|| {
            "PostgreSQL's `initdb` was found neither in `pg_config --bindir` nor on PATH: \
             install the server (`apt-get install -y postgresql`), or set \
             GREENLET_TEST_POSTGRES to a libpq connection string"
                .to_owned()
        })
}

fn on_path(program: impl AsRef<OsStr>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program.as_ref()))
        .find(|candidate| candidate.is_file())
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}
