//! The watermark query on an SQLite store, opened read-only.

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{Row, WatermarkError, QUERY};

pub(super) fn latest(path: &str, experiment: &str) -> Result<Option<Row>, WatermarkError> {
    let uri = format!("sqlite:///{path}");
    if !std::path::Path::new(path).exists() {
        return Err(WatermarkError::StoreNotFound(path.to_owned()));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| WatermarkError::Unreachable { dsn: uri.clone(), reason: e.to_string() })?;
    // MLflow may be writing: wait for its lock rather than failing.
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| WatermarkError::Query { dsn: uri.clone(), reason: e.to_string() })?;
    let sql = QUERY.replace("{p}", "?1").replace("{fence}", "LIMIT -1 OFFSET 0").replace("{no_index}", "NOT INDEXED");
    let result = conn
        .query_row(&sql, [experiment], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .optional();
    result.map_err(|e| {
        let reason = e.to_string();
        if reason.contains("no such table") || reason.contains("not a database") || reason.contains("no such column") {
            WatermarkError::NotAnMlflowStore { dsn: uri.clone(), reason }
        } else {
            WatermarkError::Query { dsn: uri.clone(), reason }
        }
    })
}
