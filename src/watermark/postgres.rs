//! The watermark query on a PostgreSQL store (no TLS: loopback and trusted networks).

use std::str::FromStr;
use std::time::Duration;

use postgres::config::SslMode;
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{Config, NoTls};

use super::{mask_dsn, Row, WatermarkError, QUERY};

/// Connection timeout when the DSN sets none: an unreachable server fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

fn classify(dsn: &str, e: &postgres::Error) -> WatermarkError {
    let dsn = mask_dsn(dsn);
    let reason = mask_dsn(&e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned()));
    match e.code() {
        Some(c) if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
            WatermarkError::Authentication { dsn, reason }
        }
        Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::UNDEFINED_COLUMN => WatermarkError::NotAnMlflowStore { dsn, reason },
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => WatermarkError::Unreachable { dsn, reason },
        Some(_) => WatermarkError::Query { dsn, reason },
        None => {
            // No SQLSTATE: the connection itself failed (refused, timed out, closed).
            let detail = std::error::Error::source(e).map(|s| format!("{e}: {s}")).unwrap_or_else(|| e.to_string());
            WatermarkError::Unreachable { dsn, reason: mask_dsn(&detail) }
        }
    }
}

pub(super) fn latest(dsn: &str, experiment: &str) -> Result<Option<Row>, WatermarkError> {
    let mut config = Config::from_str(dsn).map_err(|e| WatermarkError::UnsupportedUri(format!("{}: {e}", mask_dsn(dsn))))?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(WatermarkError::TlsUnsupported { dsn: mask_dsn(dsn) });
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let mut client = config.connect(NoTls).map_err(|e| classify(dsn, &e))?;
    let sql = QUERY.replace("{p}", "$1").replace("{fence}", "OFFSET 0").replace("{no_index}", "");
    // Typed parameters: one round trip, no server-side prepared statement.
    let rows = client.query_typed(&sql, &[(&experiment, Type::TEXT)]).map_err(|e| classify(dsn, &e))?;
    rows.first()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .transpose()
        .map_err(|e: postgres::Error| classify(dsn, &e))
}
