//! File names of the source: `YYYY-MM_r<first>-<end>.<parquet|csv>`, twelve digits each, the
//! range half-open. Names alone tell which file holds which rows, so listing the folder is
//! the whole metadata read for `row_count`; what the files hold is checked by `verify`.

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

    /// Size of the file in bytes; 0 when it cannot be read (it is listed, not opened).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
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

/// The month files named in `dir`, ordered by `row_id`, unchecked. Hidden files (temporaries
/// of an interrupted write) and foreign files are ignored.
pub fn scan(dir: &Path) -> Result<Vec<MonthFile>, SourceError> {
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
    Ok(files)
}

/// Everything the names of `files` (ordered by [`scan`]) say is wrong: ranges that are empty,
/// leave a gap or overlap, and months that do not strictly increase along `row_id`.
#[must_use]
pub fn name_problems(files: &[MonthFile]) -> Vec<SourceError> {
    let mut problems = Vec::new();
    let mut expected = 0u64;
    for (i, f) in files.iter().enumerate() {
        let prev = if i == 0 { "the start".to_owned() } else { files[i - 1].path.display().to_string() };
        if f.end <= f.first {
            // A zero-row file would be listed as a month that arrived, and every month up to its
            // label would be skipped as "older than the newest".
            problems.push(SourceError::EmptyRange { path: f.path.clone(), first: f.first, end: f.end });
        }
        if f.first > expected {
            problems.push(SourceError::Continuity {
                kind: "gap",
                detail: format!("rows {expected}..{} are in no file (between {prev} and {})", f.first, f.path.display()),
            });
        } else if f.first < expected {
            problems.push(SourceError::Continuity {
                kind: "overlap",
                detail: format!("{} starts at {} but {prev} already holds rows up to {expected}", f.path.display(), f.first),
            });
        }
        if i > 0 && f.month <= files[i - 1].month {
            problems.push(SourceError::MonthOrder {
                path: f.path.clone(),
                month: f.month.to_string(),
                previous: files[i - 1].path.clone(),
                previous_month: files[i - 1].month.to_string(),
            });
        }
        expected = expected.max(f.end);
    }
    problems
}

/// The month files of a source, ordered by `row_id`, checked by name only (cheap: no file is
/// opened): they tile `[0, total)` exactly, no range is empty, months strictly increase.
pub fn list(dir: &Path) -> Result<Vec<MonthFile>, SourceError> {
    let files = scan(dir)?;
    match name_problems(&files).into_iter().next() {
        Some(problem) => Err(problem),
        None => Ok(files),
    }
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
        let m = |s: &str| Month::parse(s).unwrap();
        for (month, first, end) in [("2009-01", 0, 10), ("2009-02", 10, 25)] {
            std::fs::write(dir.path().join(file_name(m(month), first, end, Format::Parquet)), b"").unwrap();
        }
        std::fs::write(dir.path().join(".tmp-file"), b"").unwrap();
        std::fs::write(dir.path().join("README.txt"), b"").unwrap();
        assert_eq!(row_count(dir.path()).unwrap(), 25);
        std::fs::write(dir.path().join(file_name(m("2009-04"), 30, 40, Format::Parquet)), b"").unwrap();
        let err = list(dir.path()).unwrap_err().to_string();
        assert!(err.contains("gap") && err.contains("25..30"), "{err}");
        std::fs::write(dir.path().join(file_name(m("2009-03"), 25, 31, Format::Csv)), b"").unwrap();
        let err = list(dir.path()).unwrap_err().to_string();
        assert!(err.contains("overlap"), "{err}");
        assert!(matches!(row_count(&dir.path().join("nope")), Err(SourceError::Missing(_))));
    }

    fn source_of(names: &[(&str, u64, u64)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for &(month, first, end) in names {
            let name = file_name(Month::parse(month).unwrap(), first, end, Format::Parquet);
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        dir
    }

    #[test]
    fn an_empty_range_is_refused_naming_the_file() {
        // `touch source/2009-06_r000000020000-000000020000.parquet` after four months.
        let dir = source_of(&[("2009-01", 0, 5), ("2009-02", 5, 10), ("2009-03", 10, 15), ("2009-04", 15, 20), ("2009-06", 20, 20)]);
        let err = list(dir.path()).unwrap_err();
        assert!(matches!(err, SourceError::EmptyRange { .. }), "{err}");
        assert!(err.to_string().contains("2009-06_r000000000020-000000000020.parquet"), "{err}");
        assert!(matches!(row_count(dir.path()), Err(SourceError::EmptyRange { .. })));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 5, "nothing on disk changes");
    }

    #[test]
    fn months_must_strictly_increase_along_row_id() {
        let dir = source_of(&[("2009-01", 0, 5), ("2009-03", 5, 10), ("2009-02", 10, 15)]);
        let err = list(dir.path()).unwrap_err();
        assert!(matches!(err, SourceError::MonthOrder { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("2009-02_r000000000010") && text.contains("2009-03"), "{text}");
        let dir = source_of(&[("2009-01", 0, 5), ("2009-01", 5, 10)]);
        assert!(matches!(list(dir.path()), Err(SourceError::MonthOrder { .. })), "the same month twice");
        let dir = source_of(&[("2009-01", 0, 5), ("2009-03", 5, 10), ("2009-07", 10, 15)]);
        assert_eq!(row_count(dir.path()).unwrap(), 15, "months may be missing, never out of order");
        let files = scan(dir.path()).unwrap();
        assert!(name_problems(&files).is_empty());
    }
}
