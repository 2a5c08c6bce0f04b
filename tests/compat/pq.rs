//! Just enough of libpq (through pq-sys) for the rows: a blocking connection that runs a query.

use std::ffi::{CStr, CString};

use pq_sys::{ConnStatusType, ExecStatusType, PGconn};

/// A libpq connection (`PQconnectdb`), closed on drop (`PQfinish`).
pub struct Connection(*mut PGconn);

// SAFETY: a libpq connection may move between threads; it is used by one at a time (`&mut`).
unsafe impl Send for Connection {}

impl Connection {
    /// Connects with a libpq connection string, blocking until the connection is made.
    pub fn new(conninfo: &str) -> Result<Connection, String> {
        let conninfo = CString::new(conninfo).map_err(|e| e.to_string())?;
        // SAFETY: a NUL-terminated string that lives across the call.
        let conn = Connection(unsafe { pq_sys::PQconnectdb(conninfo.as_ptr()) });
        if conn.0.is_null() {
            return Err("PQconnectdb: out of memory".to_owned());
        }
        // SAFETY: a connection PQconnectdb returned, not finished yet.
        match unsafe { pq_sys::PQstatus(conn.0) } {
            ConnStatusType::CONNECTION_OK => Ok(conn),
            _ => Err(conn.error()),
        }
    }

    /// Runs `sql` (`PQexec`, blocking until the result is in) and checks it returned rows.
    pub fn query(&mut self, sql: &str) -> Result<(), String> {
        let sql = CString::new(sql).map_err(|e| e.to_string())?;
        // SAFETY: a live connection and a NUL-terminated string that lives across the call.
        let result = unsafe { pq_sys::PQexec(self.0, sql.as_ptr()) };
        // SAFETY: PQresultStatus accepts the null PQexec returns when out of memory.
        let status = unsafe { pq_sys::PQresultStatus(result) };
        // SAFETY: a result PQexec returned (or null), cleared once.
        unsafe { pq_sys::PQclear(result) };
        match status {
            ExecStatusType::PGRES_TUPLES_OK => Ok(()),
            other => Err(format!("{other:?}: {}", self.error())),
        }
    }

    fn error(&self) -> String {
        // SAFETY: a live connection; the message it returns lives as long as the connection.
        let message = unsafe { CStr::from_ptr(pq_sys::PQerrorMessage(self.0)) };
        message.to_string_lossy().trim_end().to_owned()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: a connection PQconnectdb returned, finished once.
        unsafe { pq_sys::PQfinish(self.0) };
    }
}
