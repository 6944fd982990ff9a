//! The watermark query on a PostgreSQL store, over TLS when the DSN (or `PGSSLMODE`) asks for
//! it, on a connection kept for the next call.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use postgres::config::{Host, SslMode as PgSslMode};
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::{certificate_problem, SslMode, TlsSettings};
use super::{conninfo, mask_dsn, pool, Row, WatermarkError, QUERY};

/// Connection timeout when the DSN sets none: an unreachable server fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long sent bytes may stay unacknowledged when the DSN sets no `tcp_user_timeout`: a kept
/// connection whose server vanished (failover, dropped NAT entry) fails in seconds instead
/// of waiting for TCP's retransmissions (~15 minutes), and is then replaced.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// One DSN, parsed, with the TLS settings in force.
struct Target<'a> {
    dsn: &'a str,
    config: Config,
    tls: TlsSettings,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

impl<'a> Target<'a> {
    fn new(dsn: &'a str) -> Result<Self, WatermarkError> {
        let invalid = |reason: String| WatermarkError::UnsupportedUri(format!("{}: {}", mask_dsn(dsn), mask_dsn(&reason)));
        let split = conninfo::split(dsn).map_err(invalid)?;
        let mut config = Config::from_str(&split.rest).map_err(|e| invalid(e.to_string()))?;
        let tls = TlsSettings::resolve(&split.ssl, &|k| std::env::var(k).ok(), home().as_deref())
            .map_err(|reason| WatermarkError::TlsConfig { dsn: mask_dsn(dsn), reason })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        Ok(Self { dsn, config, tls })
    }

    /// The connection cache key: the DSN and the TLS settings in force (the environment may
    /// change between calls).
    fn key(&self) -> String {
        format!("{}\u{0}{:?}", self.dsn, self.tls)
    }

    fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            _ => "the server".to_owned(),
        }
    }

    fn connect(&self) -> Result<Client, WatermarkError> {
        match self.tls.mode {
            SslMode::Disable => self.attempt(PgSslMode::Disable),
            // libpq's allow: plaintext, and TLS only if the server refuses plaintext.
            SslMode::Allow => match self.attempt(PgSslMode::Disable) {
                Err(WatermarkError::TlsRequired { .. }) => self.attempt(PgSslMode::Prefer),
                other => other,
            },
            SslMode::Prefer => self.attempt(PgSslMode::Prefer),
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => self.attempt(PgSslMode::Require),
        }
    }

    fn attempt(&self, mode: PgSslMode) -> Result<Client, WatermarkError> {
        let mut config = self.config.clone();
        config.ssl_mode(mode);
        let connected = if mode == PgSslMode::Disable {
            config.connect(NoTls)
        } else {
            let rustls = self.tls.client_config().map_err(|reason| WatermarkError::TlsConfig { dsn: mask_dsn(self.dsn), reason })?;
            config.connect(MakeRustlsConnect::new(rustls))
        };
        connected.map_err(|e| self.classify(&e, mode == PgSslMode::Disable))
    }

    fn classify(&self, e: &postgres::Error, plaintext: bool) -> WatermarkError {
        let dsn = mask_dsn(self.dsn);
        let mode = self.tls.mode.as_str();
        if let Some(db) = e.as_db_error() {
            let (message, code) = (db.message(), db.code());
            // pg_hba.conf has only hostssl lines for this client: the server says so as
            // "no pg_hba.conf entry for host …, no encryption" ("SSL off" before PostgreSQL 12).
            if plaintext && *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION && (message.ends_with("no encryption") || message.ends_with("SSL off")) {
                return WatermarkError::TlsRequired { dsn, mode };
            }
            let reason = mask_dsn(message);
            return match code {
                c if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                    WatermarkError::Authentication { dsn, reason }
                }
                c if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::UNDEFINED_COLUMN => WatermarkError::NotAnMlflowStore { dsn, reason },
                c if *c == SqlState::INVALID_CATALOG_NAME => WatermarkError::Unreachable { dsn, reason },
                _ => WatermarkError::Query { dsn, reason },
            };
        }
        if let Some(r) = find_rustls_error(e) {
            return match certificate_problem(r, &self.tls, &self.host()) {
                Some(problem) => WatermarkError::TlsCertificate { dsn, mode, problem },
                None => WatermarkError::TlsHandshake { dsn, reason: r.to_string() },
            };
        }
        let cause = std::error::Error::source(e).map(ToString::to_string);
        if cause.as_deref() == Some("server does not support TLS") {
            return WatermarkError::TlsNotOffered { dsn, mode };
        }
        // No SQLSTATE: the connection itself failed (refused, timed out, closed).
        let detail = cause.map_or_else(|| e.to_string(), |c| format!("{e}: {c}"));
        WatermarkError::Unreachable { dsn, reason: mask_dsn(&detail) }
    }
}

/// The rustls error under a failed handshake (tokio-rustls wraps it in an `io::Error`, whose
/// `source` skips it: look inside with `get_ref`).
fn find_rustls_error(e: &postgres::Error) -> Option<&rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = current {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return Some(r);
        }
        current = err.source();
    }
    None
}

fn query(client: &mut Client, sql: &str, experiment: &str) -> Result<Vec<Row>, postgres::Error> {
    // Typed parameters: one round trip, no server-side prepared statement.
    let rows = client.query_typed(sql, &[(&experiment, Type::TEXT)])?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
}

pub(super) fn intervals(dsn: &str, experiment: &str) -> Result<Vec<Row>, WatermarkError> {
    let target = Target::new(dsn)?;
    let sql = QUERY.replace("{p}", "$1").replace("{materialized}", "MATERIALIZED").replace("{no_index}", "").replace("{join}", "JOIN");
    let shown = mask_dsn(dsn);
    pool::with_client(&target.key(), &shown, || target.connect(), |client| query(client, &sql, experiment), |e| target.classify(e, false))
}
