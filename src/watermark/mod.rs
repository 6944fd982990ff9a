//! `get_latest_trained_row`: which rows the model has already seen, read straight from MLflow's
//! tracking database (PostgreSQL or SQLite) in one parametrised query.
//!
//! A run counts when its experiment has the name asked for and is active, the run is FINISHED
//! and active, it is a training run (param `context = train`), and it has both `first_row` and
//! `row_count`. Each counted run claims the rows `[first_row, first_row + row_count)`; the
//! watermark is where the chain of claims that starts at row 0 ends (0 when none starts there).
//! Rows have an order that clocks do not: a client whose clock is behind, or an old run marked
//! FAILED and then FINISHED again, changes `end_time` but not which rows were trained.

mod conninfo;
mod dsn;
mod pool;
mod postgres;
mod sqlite;
mod tls;

pub use dsn::mask_dsn;

/// The query, with `{p}` standing for the bind-parameter marker of the dialect, and `{join}`,
/// `{materialized}`, `{no_index}` for what makes each planner read the experiment's runs first
/// and then each run's three params through their primary key `(key, run_uuid)`: every counted
/// run's id and its two params, in no particular order. The chain is followed in Rust, in
/// O(n log n); a recursive CTE would look each next run up by a param's value, which MLflow does
/// not index (O(n²)). Unlike the seed's "latest by end_time", which stopped at the first run of
/// a sorted scan, this reads every training run's params: one index probe per param, about
/// 10 ms per thousand runs on a busy machine. On SQLite, `CROSS JOIN` fixes the join order and
/// `NOT INDEXED` keeps the runs scan off the primary-key index (one random read per run).
/// PostgreSQL plans freshly written runs (before autovacuum's statistics) as a scan of every
/// experiment's params unless the runs come first from a `MATERIALIZED` CTE. The experiment is
/// looked up once (experiment names are unique), not joined.
const QUERY: &str = "\
WITH r AS {materialized} (
  SELECT r.run_uuid
  FROM runs r {no_index}
  WHERE r.experiment_id = (SELECT e.experiment_id FROM experiments e WHERE e.name = {p} AND e.lifecycle_stage = 'active')
    AND r.status = 'FINISHED'
    AND r.lifecycle_stage = 'active'
)
SELECT r.run_uuid, f.value, c.value
FROM r
{join} params x ON x.run_uuid = r.run_uuid AND x.key = 'context'
{join} params f ON f.run_uuid = r.run_uuid AND f.key = 'first_row'
{join} params c ON c.run_uuid = r.run_uuid AND c.key = 'row_count'
WHERE x.value = 'train'";

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

/// A counted run and its two params, as text.
type Row = (String, String, String);

/// `[first, end)` of a counted run, its params checked.
fn interval(run: &str, first: &str, count: &str) -> Result<(u64, u64), WatermarkError> {
    let parse = |key: &str, v: &str| {
        v.trim().parse::<u64>().map_err(|_| WatermarkError::InvalidParam { run: run.to_owned(), key: key.into(), value: v.into() })
    };
    let (f, c) = (parse("first_row", first)?, parse("row_count", count)?);
    let end = f
        .checked_add(c)
        .ok_or_else(|| WatermarkError::InvalidParam { run: run.to_owned(), key: "row_count".into(), value: count.to_owned() })?;
    Ok((f, end))
}

/// The end of the chain of intervals that starts at 0: each link starts where an earlier one
/// ended. Where the runs do not tile (a run deleted or failed after the fact leaves a gap; two
/// runs claim the same rows), the watermark is the furthest row such a chain reaches: every
/// row before it was trained by a counted run, and `taxifare check` names the rest (a lifecycle
/// refuses to train on top of it). Empty intervals are no link.
pub fn chain_end(mut intervals: Vec<(u64, u64)>) -> u64 {
    intervals.sort_unstable();
    let mut reached = std::collections::HashSet::from([0u64]);
    let mut furthest = 0;
    // Sorted by start, every link's start is final (reached only by intervals that start
    // before it) when it is visited.
    for (first, end) in intervals {
        if end > first && reached.contains(&first) {
            reached.insert(end);
            furthest = furthest.max(end);
        }
    }
    furthest
}

fn end_of(rows: Vec<Row>) -> Result<u64, WatermarkError> {
    let intervals = rows.iter().map(|(run, first, count)| interval(run, first, count)).collect::<Result<Vec<_>, _>>()?;
    Ok(chain_end(intervals))
}

/// The first row not yet trained on: the end of the chain of finished training runs' rows that
/// starts at row 0 (see [`chain_end`]), or 0 when there is none (or no such experiment).
pub fn get_latest_trained_row(tracking_db: &str, experiment: &str) -> Result<u64, WatermarkError> {
    let rows = if tracking_db.starts_with("postgresql://") || tracking_db.starts_with("postgres://") {
        postgres::intervals(tracking_db, experiment)?
    } else if let Some(path) = tracking_db.strip_prefix("sqlite:///") {
        sqlite::intervals(path, experiment)?
    } else {
        return Err(WatermarkError::UnsupportedUri(mask_dsn(tracking_db)));
    };
    end_of(rows)
}

#[cfg(test)]
mod tests {
    use super::chain_end;

    #[test]
    fn the_chain_from_zero_decides_not_the_order_of_the_runs() {
        assert_eq!(chain_end(vec![]), 0);
        assert_eq!(chain_end(vec![(4000, 8000), (0, 4000)]), 8000);
        // No run starts at 0: nothing is trained.
        assert_eq!(chain_end(vec![(100, 200)]), 0);
        // A gap: the chain stops before it.
        assert_eq!(chain_end(vec![(0, 100), (200, 300)]), 100);
        // Overlaps: the furthest row a chain reaches; a run inside another is no link.
        assert_eq!(chain_end(vec![(0, 100), (100, 160), (100, 170), (50, 400)]), 170);
        assert_eq!(chain_end(vec![(0, 100), (100, 160), (160, 200), (100, 170)]), 200);
        // An empty claim is no link.
        assert_eq!(chain_end(vec![(0, 0), (0, 10)]), 10);
        assert_eq!(chain_end(vec![(0, 10), (10, 10), (10, 20)]), 20);
    }
}
