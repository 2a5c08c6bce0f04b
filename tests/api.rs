//! API contracts checked at compile time: error traits, Send/Sync, sizes.

use greenlet::{ConfigError, Elapsed, Greenlet, GreenletRef, Iwait, JoinError, Timeout};

fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
fn is_send<T: Send>() {}
fn is_sync<T: Sync>() {}

#[test]
fn errors_are_std_errors() {
    is_error::<JoinError>();
    is_error::<Elapsed>();
    is_error::<ConfigError>();
}

#[test]
fn handles_cross_threads() {
    is_send::<Greenlet<String>>();
    is_sync::<Greenlet<String>>();
    is_send::<GreenletRef>();
    is_sync::<GreenletRef>();
    is_send::<Timeout>();
    is_send::<Iwait<u8>>();
}

#[test]
fn errors_stay_small() {
    assert!(std::mem::size_of::<JoinError>() <= 32);
    assert!(std::mem::size_of::<Elapsed>() <= 16);
    assert!(std::mem::size_of::<Result<(), JoinError>>() <= 32);
}

#[cfg(feature = "tls")]
#[test]
fn tls_streams_are_read_write_and_send() {
    use greenlet::net::tls::{ClientStream, ServerStream, TlsAcceptor, TlsConnector};
    fn is_rw<T: std::io::Read + std::io::Write>() {}
    is_rw::<ClientStream>();
    is_rw::<ServerStream>();
    is_send::<ClientStream>();
    is_send::<TlsConnector>();
    is_sync::<TlsAcceptor>();
}
