//! `get_latest_trained_row`: which rows the model has already seen, read straight from MLflow's
//! tracking database (PostgreSQL or SQLite) in one parametrised query.
//!
//! A run counts when its experiment has the name asked for and is active, the run is FINISHED
//! and active, it is a training run (param `context = train`), and it has both `first_row` and
//! `row_count`. The latest is the greatest `end_time`, ties broken by `start_time` then
//! `run_uuid`. The answer is `first_row + row_count` of that run, or 0.

mod conninfo;
mod dsn;
mod pool;
mod postgres;
mod sqlite;
mod tls;

pub use dsn::mask_dsn;

/// The query, with `{p}` standing for the bind-parameter marker of the dialect and `{fence}`
/// for its optimisation fence (and `{no_index}` for SQLite's index hint). MLflow's schema has
/// no index on `runs.end_time`, so every plan
/// reads the experiment's runs; this one sorts just the cheap run columns first (the fence
/// keeps the planner from pushing the param checks below the sort) and then checks params in
/// that order, stopping at the first training run with both params: usually the first one.
/// On SQLite `NOT INDEXED` keeps it from walking the primary-key index (one random read per
/// run) to half-serve the ORDER BY: a plain scan and a sort are 3x faster at 100k runs.
/// The checks are scalar subqueries, not EXISTS, because PostgreSQL turns EXISTS into a hash
/// semi-join that would lose the order. The experiment is looked up once (experiment names are
/// unique), not joined: on freshly written runs, before autovacuum's statistics, PostgreSQL
/// planned the join as a nested loop re-scanning `experiments` for every run (2.5x slower).
/// The two params come from the same run by construction.
const QUERY: &str = "\
SELECT r.run_uuid,
  (SELECT p.value FROM params p WHERE p.run_uuid = r.run_uuid AND p.key = 'first_row'),
  (SELECT p.value FROM params p WHERE p.run_uuid = r.run_uuid AND p.key = 'row_count')
FROM (
  SELECT r.run_uuid
  FROM runs r {no_index}
  WHERE r.experiment_id = (SELECT e.experiment_id FROM experiments e WHERE e.name = {p} AND e.lifecycle_stage = 'active')
    AND r.status = 'FINISHED'
    AND r.lifecycle_stage = 'active'
  ORDER BY r.end_time DESC NULLS LAST, r.start_time DESC NULLS LAST, r.run_uuid DESC
  {fence}
) r
WHERE (SELECT c.value FROM params c WHERE c.run_uuid = r.run_uuid AND c.key = 'context') = 'train'
  AND (SELECT c.value FROM params c WHERE c.run_uuid = r.run_uuid AND c.key = 'first_row') IS NOT NULL
  AND (SELECT c.value FROM params c WHERE c.run_uuid = r.run_uuid AND c.key = 'row_count') IS NOT NULL
LIMIT 1";

/// Errors of reading the watermark; every DSN in a message has its password masked.
#[derive(Debug, thiserror::Error)]
pub enum WatermarkError {
    /// Neither `postgresql://` nor `sqlite:///`.
    #[error("unsupported tracking database URI {0:?} (expected postgresql://… or sqlite:///…)")]
    UnsupportedUri(String),
    /// The SQLite file does not exist.
    #[error("MLflow store not found: {0}")]
    StoreNotFound(String),
    /// The server cannot be reached (refused, timed out, unknown host or database).
    #[error("cannot reach the tracking database {dsn}: {reason}")]
    Unreachable {
        /// Masked DSN.
        dsn: String,
        /// What failed.
        reason: String,
    },
    /// The server refused the credentials.
    #[error("authentication failed for the tracking database {dsn}: {reason}")]
    Authentication {
        /// Masked DSN.
        dsn: String,
        /// What the server said.
        reason: String,
    },
    /// The server accepts this client only over TLS, and the connection was plaintext.
    #[error("{dsn}: the server requires TLS for this connection, and sslmode={mode} does not encrypt: set sslmode=require or stronger")]
    TlsRequired {
        /// Masked DSN.
        dsn: String,
        /// The `sslmode` in force.
        mode: &'static str,
    },
    /// TLS was required, and the server does not offer it.
    #[error("{dsn}: the server does not offer TLS, and sslmode={mode} requires it")]
    TlsNotOffered {
        /// Masked DSN.
        dsn: String,
        /// The `sslmode` in force.
        mode: &'static str,
    },
    /// The server's certificate does not verify (unknown CA, host name mismatch, expired).
    #[error("{dsn}: the server's TLS certificate does not verify (sslmode={mode}): {problem}")]
    TlsCertificate {
        /// Masked DSN.
        dsn: String,
        /// The `sslmode` in force.
        mode: &'static str,
        /// Why, in words.
        problem: String,
    },
    /// The TLS settings are invalid, or a certificate or key file cannot be read.
    #[error("{dsn}: TLS settings: {reason}")]
    TlsConfig {
        /// Masked DSN.
        dsn: String,
        /// What is wrong.
        reason: String,
    },
    /// The TLS handshake failed for another reason than the certificate.
    #[error("{dsn}: TLS handshake failed: {reason}")]
    TlsHandshake {
        /// Masked DSN.
        dsn: String,
        /// What rustls said.
        reason: String,
    },
    /// The database has no MLflow tables.
    #[error("{dsn} is not an MLflow tracking store: {reason}")]
    NotAnMlflowStore {
        /// Masked DSN.
        dsn: String,
        /// What is missing.
        reason: String,
    },
    /// A `first_row`/`row_count` param is not a non-negative integer.
    #[error("run {run}: param {key}={value:?} is not a non-negative integer")]
    InvalidParam {
        /// The run.
        run: String,
        /// The param.
        key: String,
        /// Its value.
        value: String,
    },
    /// Any other database error.
    #[error("querying {dsn}: {reason}")]
    Query {
        /// Masked DSN.
        dsn: String,
        /// What failed.
        reason: String,
    },
}

/// The winning run and its two params, as text.
type Row = (String, String, String);

fn end_of(row: Option<Row>) -> Result<u64, WatermarkError> {
    let Some((run, first, count)) = row else { return Ok(0) };
    let parse = |key: &str, v: &str| {
        v.trim().parse::<u64>().map_err(|_| WatermarkError::InvalidParam { run: run.clone(), key: key.into(), value: v.into() })
    };
    let (f, c) = (parse("first_row", &first)?, parse("row_count", &count)?);
    f.checked_add(c).ok_or_else(|| WatermarkError::InvalidParam { run: run.clone(), key: "row_count".into(), value: count.clone() })
}

/// The first row not yet trained on: `first_row + row_count` of the latest finished training
/// run of `experiment`, or 0 when there is none (or no such experiment).
pub fn get_latest_trained_row(tracking_db: &str, experiment: &str) -> Result<u64, WatermarkError> {
    let row = if tracking_db.starts_with("postgresql://") || tracking_db.starts_with("postgres://") {
        postgres::latest(tracking_db, experiment)?
    } else if let Some(path) = tracking_db.strip_prefix("sqlite:///") {
        sqlite::latest(path, experiment)?
    } else {
        return Err(WatermarkError::UnsupportedUri(mask_dsn(tracking_db)));
    };
    end_of(row)
}
