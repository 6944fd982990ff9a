//! File names of the source: `YYYY-MM_r<first>-<end>.<parquet|csv>`, twelve digits each, the
//! range half-open. Names alone tell which file holds which rows, so listing the folder is
//! the whole metadata read for `row_count`.

use std::path::{Path, PathBuf};

use super::SourceError;
use crate::calendar::Month;

/// Storage format of source files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet (default).
    Parquet,
    /// CSV with a header, for spreadsheets.
    Csv,
}

impl Format {
    /// The file extension.
    #[must_use]
    pub fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv => "csv",
        }
    }

    /// Parses `parquet` or `csv`.
    pub fn parse(s: &str) -> Result<Self, SourceError> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Self::Parquet),
            "csv" => Ok(Self::Csv),
            other => Err(SourceError::Invalid(format!("unknown source format {other:?} (expected parquet or csv)"))),
        }
    }
}

/// One month file of the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthFile {
    /// The month of the rides.
    pub month: Month,
    /// First `row_id`.
    pub first: u64,
    /// One past the last `row_id`.
    pub end: u64,
    /// Its format.
    pub format: Format,
    /// Its path.
    pub path: PathBuf,
}

impl MonthFile {
    /// Rows in the file.
    #[must_use]
    pub fn rows(&self) -> u64 {
        self.end - self.first
    }
}

/// The file name of a month holding rows `[first, end)`.
#[must_use]
pub fn file_name(month: Month, first: u64, end: u64, format: Format) -> String {
    format!("{month}_r{first:012}-{end:012}.{}", format.extension())
}

fn parse_name(dir: &Path, name: &str) -> Option<MonthFile> {
    let (stem, ext) = name.rsplit_once('.')?;
    let format = match ext {
        "parquet" => Format::Parquet,
        "csv" => Format::Csv,
        _ => return None,
    };
    let (month, range) = stem.split_once("_r")?;
    let (first, end) = range.split_once('-')?;
    if first.len() != 12 || end.len() != 12 {
        return None;
    }
    Some(MonthFile {
        month: Month::parse(month)?,
        first: first.parse().ok()?,
        end: end.parse().ok()?,
        format,
        path: dir.join(name),
    })
}

/// The month files of a source, ordered by `row_id`, checked to tile `[0, total)` exactly.
/// Hidden files (temporaries of an interrupted write) and foreign files are ignored.
pub fn list(dir: &Path) -> Result<Vec<MonthFile>, SourceError> {
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SourceError::Missing(dir.to_owned()),
        _ => SourceError::Io { path: dir.to_owned(), source: e },
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SourceError::Io { path: dir.to_owned(), source: e })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        if let Some(f) = parse_name(dir, name) {
            files.push(f);
        }
    }
    files.sort_by_key(|f| (f.first, f.end));
    let mut expected = 0u64;
    for (i, f) in files.iter().enumerate() {
        let prev = if i == 0 { "the start".to_owned() } else { files[i - 1].path.display().to_string() };
        if f.end < f.first {
            return Err(SourceError::Continuity { kind: "overlap", detail: format!("{} ends before it starts", f.path.display()) });
        }
        if f.first > expected {
            return Err(SourceError::Continuity {
                kind: "gap",
                detail: format!("rows {expected}..{} are in no file (between {prev} and {})", f.first, f.path.display()),
            });
        }
        if f.first < expected {
            return Err(SourceError::Continuity {
                kind: "overlap",
                detail: format!("{} starts at {} but {prev} already holds rows up to {expected}", f.path.display(), f.first),
            });
        }
        expected = f.end;
    }
    Ok(files)
}

/// Total rows of the source: the end of its last file (names only).
pub fn row_count(dir: &Path) -> Result<u64, SourceError> {
    Ok(list(dir)?.last().map_or(0, |f| f.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_gaps_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let m = Month::parse("2009-01").unwrap();
        for (first, end) in [(0, 10), (10, 25)] {
            std::fs::write(dir.path().join(file_name(m, first, end, Format::Parquet)), b"").unwrap();
        }
        std::fs::write(dir.path().join(".tmp-file"), b"").unwrap();
        std::fs::write(dir.path().join("README.txt"), b"").unwrap();
        assert_eq!(row_count(dir.path()).unwrap(), 25);
        std::fs::write(dir.path().join(file_name(m, 30, 40, Format::Parquet)), b"").unwrap();
        let err = list(dir.path()).unwrap_err().to_string();
        assert!(err.contains("gap") && err.contains("25..30"), "{err}");
        std::fs::write(dir.path().join(file_name(m, 25, 31, Format::Csv)), b"").unwrap();
        let err = list(dir.path()).unwrap_err().to_string();
        assert!(err.contains("overlap"), "{err}");
        assert!(matches!(row_count(&dir.path().join("nope")), Err(SourceError::Missing(_))));
    }
}
