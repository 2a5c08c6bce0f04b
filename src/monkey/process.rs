//! Child processes and threads: `waitpid`, `wait4`, `waitid`, `pthread_join`.
//!
//! Inside a greenlet, a wait for one child (`Child::wait`, `Command::status`,
//! `Command::output`) parks the greenlet on a pidfd (Linux 5.3 and later), which becomes
//! readable when the child exits; the C library's own call then reaps it with `WNOHANG`, so
//! the status, `ECHILD` and `WNOHANG` itself behave as before. A wait for any child or a
//! process group, one that also reports stopped or continued children, or a kernel without
//! pidfds, waits on the [thread pool](crate::threadpool) instead, in `waitid` with `WNOWAIT`
//! (which reaps nothing), and the greenlet then reaps with `WNOHANG`.
//!
//! `pthread_join` (`std::thread::JoinHandle::join`) joins on the thread pool while only the
//! greenlet waits.
//!
//! # Kill safety
//!
//! A killed wait for a child fails with `EINTR` (then `ECANCELED` until the kill is
//! delivered), and the child is still reaped when it exits, by a greenlet of the crate
//! waiting on its pidfd, so it never stays a zombie; a wait for any child leaves it to be
//! reaped by the next wait, as a signal would. A killed `pthread_join` fails with `ECANCELED`
//! (`JoinHandle::join` then panics in the greenlet being killed); the thread is still joined
//! on the pool, and its result dropped.
//!
//! Not covered: a greenlet killed while `Command::output` reads the child's pipes (before its
//! wait) gets an error from std, which drops the `Child` without waiting for it, as it does for
//! any read error; that child stays a zombie until the process waits for any child or ends.
//! Kill such a greenlet after `output` returns, or run the command with `spawn` and wait for
//! the child in a guard.

use std::ffi::c_int;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::ready::wait_fd;
use super::{catch_kill, check, cooperative, fail, real_fn};

type WaitpidFn = unsafe extern "C" fn(libc::pid_t, *mut c_int, c_int) -> libc::pid_t;
type Wait4Fn =
    unsafe extern "C" fn(libc::pid_t, *mut c_int, c_int, *mut libc::rusage) -> libc::pid_t;
type WaitidFn =
    unsafe extern "C" fn(libc::idtype_t, libc::id_t, *mut libc::siginfo_t, c_int) -> c_int;
type JoinFn = unsafe extern "C" fn(libc::pthread_t, *mut *mut libc::c_void) -> c_int;

/// `P_PIDFD` (Linux 5.4): `waitid` on a pidfd.
const P_PIDFD: libc::idtype_t = 3;

/// Options that report more than an exit, which a pidfd does not wake for.
const NOT_EXITS: c_int = libc::WUNTRACED | libc::WCONTINUED;

/// Which children a wait is for, as `waitid` names them.
#[derive(Clone, Copy)]
struct Which {
    idtype: libc::idtype_t,
    id: libc::id_t,
}

impl Which {
    /// `waitpid`'s `pid` argument.
    fn of_pid(pid: libc::pid_t) -> Which {
        match pid {
            -1 => Which {
                idtype: libc::P_ALL,
                id: 0,
            },
            p if p < -1 => Which {
                idtype: libc::P_PGID,
                id: p.unsigned_abs(),
            },
            0 => Which {
                idtype: libc::P_PGID,
                id: 0,
            },
            p => Which {
                idtype: libc::P_PID,
                id: p as libc::id_t,
            },
        }
    }
}

/// A new pidfd for `pid`, if the kernel has them and the process exists.
fn pidfd_open(pid: libc::id_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no pointers; it returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a descriptor just returned by the kernel, owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

/// The cooperative wait of the three calls. `attempt()` is the C library's call with
/// `WNOHANG` added: `Ok(0)` while no child of `which` is ready. Returns its result.
fn wait_child(
    which: Which,
    options: c_int,
    mut attempt: impl FnMut() -> Result<libc::pid_t, c_int>,
) -> Result<libc::pid_t, c_int> {
    match attempt()? {
        0 => {}
        done => return Ok(done),
    }
    let mut again = || match attempt() {
        Ok(0) => Err(libc::EAGAIN),
        other => other,
    };
    let pidfd = match which.idtype {
        _ if options & NOT_EXITS != 0 => None,
        libc::P_PID => pidfd_open(which.id).map(Target::Own),
        P_PIDFD => Some(Target::Theirs(which.id as c_int)),
        _ => None,
    };
    let Some(pidfd) = pidfd else {
        if crate::greenlet::kill::pending() {
            return Err(libc::ECANCELED);
        }
        return on_pool(which, options, again);
    };
    // `wait_fd` fails at once with ECANCELED while a kill is pending.
    let waited = wait_fd(
        "monkey waitpid",
        pidfd.fd(),
        libc::POLLIN as u32,
        None,
        &mut again,
    );
    if let (Err(libc::EINTR | libc::ECANCELED), Target::Own(_)) = (waited, pidfd)
        && options & libc::WNOWAIT == 0
    {
        // The child this greenlet was to reap: reaped when it exits, never left a zombie.
        reap_later(which.id as libc::pid_t);
    }
    waited
}

/// A pidfd of the crate's own, or the caller's (`P_PIDFD`).
enum Target {
    Own(OwnedFd),
    Theirs(c_int),
}

impl Target {
    fn fd(&self) -> c_int {
        match self {
            Target::Own(fd) => fd.as_raw_fd(),
            Target::Theirs(fd) => *fd,
        }
    }
}

/// Reaps `pid` when it exits, in a greenlet of its own (a killed wait left it), through this
/// module's own cooperative [`waitpid`].
fn reap_later(pid: libc::pid_t) {
    let reaper = crate::Builder::new().name("monkey reaper").spawn(move || {
        let mut status = 0;
        // SAFETY: `status` is writable; the wait parks this greenlet on a pidfd.
        let reaped = unsafe { waitpid(pid, &mut status, 0) };
        log::debug!("monkey: reaped child {pid} after a killed wait: {reaped}");
    });
    if let Err(e) = reaper {
        log::warn!("monkey: cannot reap child {pid} after a killed wait: {e}");
    }
}

/// The wait without a pidfd: the thread pool blocks in `waitid(WNOWAIT)` (reaping nothing)
/// until a child of `which` changes state, then the greenlet tries again; repeated while
/// another waiter took that child first.
fn on_pool(
    which: Which,
    options: c_int,
    mut again: impl FnMut() -> Result<libc::pid_t, c_int>,
) -> Result<libc::pid_t, c_int> {
    let mut peek = libc::WEXITED | libc::WNOWAIT | (options & (libc::__WALL | libc::__WCLONE));
    if options & libc::WUNTRACED != 0 {
        peek |= libc::WSTOPPED;
    }
    if options & libc::WCONTINUED != 0 {
        peek |= libc::WCONTINUED;
    }
    loop {
        let task = crate::threadpool::spawn_blocking(move || {
            let real = real_fn!(c"waitid", WaitidFn).ok_or(libc::ENOSYS)?;
            // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is writable; blocks this pool thread until a child is ready.
            check(unsafe { real(which.idtype, which.id, &mut info, peek) })
        });
        match catch_kill(|| task.join()) {
            Ok(()) => {}
            Err(()) => return Err(libc::EINTR),
        }
        task.get().unwrap_or(Err(libc::EINVAL))?;
        match again() {
            Err(libc::EAGAIN) => continue,
            other => return other,
        }
    }
}

/// `waitpid(2)` (`Child::wait`, `Command::status`): inside a greenlet after `patch_all`, parks
/// the greenlet until the child changes state.
///
/// # Safety
///
/// As the C function: `status` is null or writable.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn waitpid(
    pid: libc::pid_t,
    status: *mut c_int,
    options: c_int,
) -> libc::pid_t {
    let Some(real) = real_fn!(c"waitpid", WaitpidFn) else {
        return fail(libc::ENOSYS);
    };
    if !cooperative() || options & libc::WNOHANG != 0 {
        // SAFETY: passed through unchanged.
        return unsafe { real(pid, status, options) };
    }
    // SAFETY: passed through, with WNOHANG added.
    let once = || check(unsafe { real(pid, status, options | libc::WNOHANG) });
    wait_child(Which::of_pid(pid), options, once).unwrap_or_else(fail)
}

/// `wait4(2)`: as [`waitpid`], with the child's resource usage.
///
/// # Safety
///
/// As the C function: `status` and `usage` are null or writable.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn wait4(
    pid: libc::pid_t,
    status: *mut c_int,
    options: c_int,
    usage: *mut libc::rusage,
) -> libc::pid_t {
    let Some(real) = real_fn!(c"wait4", Wait4Fn) else {
        return fail(libc::ENOSYS);
    };
    if !cooperative() || options & libc::WNOHANG != 0 {
        // SAFETY: passed through unchanged.
        return unsafe { real(pid, status, options, usage) };
    }
    // SAFETY: passed through, with WNOHANG added.
    let once = || check(unsafe { real(pid, status, options | libc::WNOHANG, usage) });
    wait_child(Which::of_pid(pid), options, once).unwrap_or_else(fail)
}

/// `waitid(2)`: inside a greenlet after `patch_all`, parks the greenlet until a child of
/// `idtype`/`id` changes state (`P_PIDFD` waits on the caller's pidfd).
///
/// # Safety
///
/// As the C function: `info` is null or writable.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn waitid(
    idtype: libc::idtype_t,
    id: libc::id_t,
    info: *mut libc::siginfo_t,
    options: c_int,
) -> c_int {
    let Some(real) = real_fn!(c"waitid", WaitidFn) else {
        return fail(libc::ENOSYS);
    };
    if !cooperative() || options & libc::WNOHANG != 0 {
        // SAFETY: passed through unchanged.
        return unsafe { real(idtype, id, info, options) };
    }
    // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
    let mut mine: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let out = if info.is_null() { &raw mut mine } else { info };
    let once = || {
        // With WNOHANG, "nothing yet" is a zero si_pid, which the kernel does not write.
        // SAFETY: `out` is the caller's writable siginfo_t or ours.
        unsafe { *out = std::mem::zeroed() };
        // SAFETY: passed through, with WNOHANG added.
        check(unsafe { real(idtype, id, out, options | libc::WNOHANG) })?;
        // SAFETY: as above; the kernel filled it in or left it zeroed.
        Ok(unsafe { (*out).si_pid() })
    };
    // `waitid` reports 0 on success: the pid was only to tell "nothing yet".
    match wait_child(Which { idtype, id }, options, once) {
        Ok(_) => 0,
        Err(e) => fail(e),
    }
}

/// `pthread_join(3)` (`std::thread::JoinHandle::join`): inside a greenlet after `patch_all`,
/// joins on the thread pool while only the greenlet waits.
///
/// # Safety
///
/// As the C function: `retval` is null or writable.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn pthread_join(
    thread: libc::pthread_t,
    retval: *mut *mut libc::c_void,
) -> c_int {
    let Some(real) = real_fn!(c"pthread_join", JoinFn) else {
        return libc::ENOSYS; // reported as the return value, not in errno
    };
    if !cooperative() {
        // SAFETY: passed through unchanged.
        return unsafe { real(thread, retval) };
    }
    // SAFETY: pthread_self has no preconditions.
    if thread == unsafe { libc::pthread_self() } {
        return libc::EDEADLK; // joining the worker thread itself, as the C library says
    }
    if crate::greenlet::kill::pending() {
        return libc::ECANCELED;
    }
    let task = crate::threadpool::spawn_blocking(move || {
        let mut value = std::ptr::null_mut();
        // SAFETY: `value` is writable; joins the caller's thread on this pool thread.
        let r = unsafe { real(thread, &mut value) };
        (r, value as usize)
    });
    match catch_kill(|| task.join()) {
        Ok(()) => {
            let (r, value) = task.get().unwrap_or((libc::EINVAL, 0));
            if r == 0 && !retval.is_null() {
                // SAFETY: the caller's writable `retval`.
                unsafe { *retval = value as *mut libc::c_void };
            }
            r
        }
        Err(()) => libc::ECANCELED,
    }
}
