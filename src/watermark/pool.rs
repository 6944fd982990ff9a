//! One PostgreSQL connection per DSN, kept for the life of the process: a watermark read is one
//! short query, and connecting (TCP, TLS, SCRAM) costs several times more than the query.
//!
//! A kept connection that broke (server restarted, backend terminated, idle timeout of a
//! proxy) is replaced once per call; a connection inherited across `fork` is never used by the
//! child, nor closed by it (closing would end the parent's session).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use postgres::error::SqlState;
use postgres::Client;

use super::WatermarkError;

struct Kept {
    pid: u32,
    client: Client,
}

type Slot = Arc<Mutex<Option<Kept>>>;

fn slot(key: &str) -> Slot {
    static SLOTS: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    let mut slots = SLOTS.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
    slots.entry(key.to_owned()).or_default().clone()
}

fn lock(slot: &Slot) -> MutexGuard<'_, Option<Kept>> {
    // A panic while holding the slot may have left a half-used connection: drop it.
    slot.lock().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        *guard = None;
        guard
    })
}

/// Whether `e` says the connection itself is gone, rather than the query being refused.
fn broken(e: &postgres::Error, client: &Client) -> bool {
    if e.is_closed() || client.is_closed() {
        return true;
    }
    match e.code() {
        // Connection exceptions, and the server shutting the session down.
        Some(c) => {
            c.code().starts_with("08") || *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CRASH_SHUTDOWN || *c == SqlState::CANNOT_CONNECT_NOW
        }
        // No SQLSTATE: the socket failed (reset, timed out).
        None => e.as_db_error().is_none() && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// Runs `query` on the connection kept for `key`, connecting with `connect` when there is none
/// or it broke (once). Errors of `query` become `WatermarkError`s through `classify`; `shown`
/// names the database in the log (a masked DSN).
pub(super) fn with_client<T>(
    key: &str,
    shown: &str,
    connect: impl Fn() -> Result<Client, WatermarkError>,
    query: impl Fn(&mut Client) -> Result<T, postgres::Error>,
    classify: impl Fn(&postgres::Error) -> WatermarkError,
) -> Result<T, WatermarkError> {
    let slot = slot(key);
    let mut kept = lock(&slot);
    let pid = std::process::id();
    let reused = match kept.take() {
        Some(k) if k.pid != pid => {
            // Inherited across fork: the socket is the parent's.
            std::mem::forget(k.client);
            None
        }
        Some(k) if k.client.is_closed() => {
            log::info!("reconnecting to {shown}: the kept connection was closed");
            None
        }
        Some(k) => Some(k.client),
        None => None,
    };
    let was_reused = reused.is_some();
    let mut client = match reused {
        Some(c) => c,
        None => connect()?,
    };
    match query(&mut client) {
        Ok(v) => {
            *kept = Some(Kept { pid, client });
            Ok(v)
        }
        Err(e) if was_reused && broken(&e, &client) => {
            log::info!("reconnecting to {shown}: the kept connection broke ({})", super::mask_dsn(&e.to_string()));
            drop(client);
            let mut fresh = connect()?;
            let result = query(&mut fresh).map_err(|e| (broken(&e, &fresh), classify(&e)));
            match result {
                Ok(v) => {
                    *kept = Some(Kept { pid, client: fresh });
                    Ok(v)
                }
                Err((is_broken, err)) => {
                    if !is_broken {
                        *kept = Some(Kept { pid, client: fresh });
                    }
                    Err(err)
                }
            }
        }
        Err(e) => {
            let err = classify(&e);
            if !broken(&e, &client) {
                *kept = Some(Kept { pid, client });
            }
            Err(err)
        }
    }
}
