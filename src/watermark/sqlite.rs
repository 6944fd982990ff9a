//! The watermark query on an SQLite store, opened read-only.

use rusqlite::{Connection, OpenFlags};

use super::{Row, WatermarkError, QUERY};

fn open(path: &str, uri: &str, flags: OpenFlags) -> Result<Connection, WatermarkError> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| WatermarkError::Unreachable { dsn: uri.to_owned(), reason: e.to_string() })?;
    // MLflow may be writing: wait for its lock rather than failing.
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| WatermarkError::Query { dsn: uri.to_owned(), reason: e.to_string() })?;
    Ok(conn)
}

fn query(conn: &Connection, experiment: &str) -> rusqlite::Result<Vec<Row>> {
    let sql = QUERY.replace("{p}", "?1").replace("{materialized}", "").replace("{no_index}", "NOT INDEXED").replace("{join}", "CROSS JOIN");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([experiment], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    rows.collect()
}

pub(super) fn intervals(path: &str, experiment: &str) -> Result<Vec<Row>, WatermarkError> {
    let uri = format!("sqlite:///{path}");
    if !std::path::Path::new(path).exists() {
        return Err(WatermarkError::StoreNotFound(path.to_owned()));
    }
    let mut result = query(&open(path, &uri, OpenFlags::SQLITE_OPEN_READ_ONLY)?, experiment);
    let hot_journal = matches!(&result, Err(e) if e.sqlite_error().is_some_and(|s| s.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK));
    if hot_journal {
        // A writer was killed mid-transaction and left its rollback journal: only a connection
        // that may write can roll it back to the last commit (what MLflow's next connection
        // would do). The query itself still only reads.
        result = query(&open(path, &uri, OpenFlags::SQLITE_OPEN_READ_WRITE)?, experiment);
    }
    result.map_err(|e| {
        let reason = e.to_string();
        if reason.contains("no such table") || reason.contains("not a database") || reason.contains("no such column") {
            WatermarkError::NotAnMlflowStore { dsn: uri.clone(), reason }
        } else {
            WatermarkError::Query { dsn: uri.clone(), reason }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables and rows the watermark query reads, as MLflow writes them.
    fn store(conn: &Connection, runs: &[(&str, i64, &str, &str)]) {
        conn.execute_batch(
            "CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT, lifecycle_stage TEXT);
             CREATE TABLE runs (run_uuid TEXT PRIMARY KEY, experiment_id INTEGER, status TEXT, lifecycle_stage TEXT,
                                start_time INTEGER, end_time INTEGER);
             CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT);
             INSERT INTO experiments VALUES (1, 'exp', 'active');",
        )
        .unwrap();
        for (id, end, first, count) in runs {
            conn.execute("INSERT INTO runs VALUES (?1, 1, 'FINISHED', 'active', ?2, ?2)", rusqlite::params![id, end]).unwrap();
            for (k, v) in [("context", "train"), ("first_row", first), ("row_count", count)] {
                conn.execute("INSERT INTO params VALUES (?1, ?2, ?3)", [k, v, id]).unwrap();
            }
        }
    }

    /// A store copied while a writer was inside a transaction (as a `kill -9` leaves it): the
    /// journal is hot, a read-only connection cannot roll it back, and the reader must still
    /// answer with the last commit.
    #[test]
    fn a_hot_journal_left_by_a_killed_writer_is_rolled_back() {
        let dir = std::env::temp_dir().join(format!("taxifare-hot-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (live, copy) = (dir.join("live.db"), dir.join("copy.db"));
        for f in [&live, &copy] {
            let _ = std::fs::remove_file(f);
            let _ = std::fs::remove_file(f.with_extension("db-journal"));
        }
        let writer = Connection::open(&live).unwrap();
        writer.execute_batch("PRAGMA journal_mode = DELETE;").unwrap();
        store(&writer, &[("a", 1, "0", "100")]);
        // A one-page cache: the transaction's pages spill to the file before it commits, so
        // the journal holds the originals (as a big MLflow write does).
        writer.execute_batch("PRAGMA cache_size = 1; BEGIN; INSERT INTO runs VALUES ('b', 1, 'FINISHED', 'active', 2, 2);
             INSERT INTO params VALUES ('context', 'train', 'b'); INSERT INTO params VALUES ('first_row', '100', 'b');
             INSERT INTO params VALUES ('row_count', '50', 'b');").unwrap();
        for k in 0..2000 {
            writer.execute("INSERT INTO params VALUES (?1, 'x', 'b')", [format!("filler-{k}")]).unwrap();
        }
        // The writer holds its lock; copies of the file and its journal have no lock holder.
        std::fs::copy(&live, &copy).unwrap();
        std::fs::copy(live.with_extension("db-journal"), copy.with_extension("db-journal")).unwrap();
        drop(writer);
        let ro = Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let plain = query(&ro, "exp").unwrap_err();
        assert_eq!(plain.sqlite_error().map(|e| e.extended_code), Some(rusqlite::ffi::SQLITE_READONLY_ROLLBACK), "{plain}");
        drop(ro);
        let got = intervals(copy.to_str().unwrap(), "exp").unwrap();
        assert_eq!(got, vec![("a".into(), "0".into(), "100".into())], "the uncommitted run is not counted");
        assert!(!copy.with_extension("db-journal").exists(), "rolled back");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
