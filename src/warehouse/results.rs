//! What the warehouse queries return (`query`), turned into the kernel's statistics,
//! cleaning counts and metrics.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use super::query::hash_digest;
use super::WarehouseError;
use crate::kernel::cleaning::CleaningCounts;
use crate::kernel::metrics::Metrics;
use crate::kernel::model::Model;
use crate::kernel::profile::{Profile, FIELDS};
use crate::kernel::features_v3::{CellStats, N_BINS, N_CELLS};
use crate::kernel::stats::Stats;

/// One result row.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    kind: String,
    a: i64,
    b: i64,
    i: i64,
    j: i64,
    s: f64,
}

fn rows(batches: &[RecordBatch]) -> Result<Vec<Row>, WarehouseError> {
    let mut out = Vec::new();
    for batch in batches {
        let col = |name: &str| batch.column_by_name(name).ok_or_else(|| WarehouseError::Result(format!("no column {name}")));
        let kind = arrow::compute::cast(col("kind")?, &DataType::Utf8).map_err(|e| WarehouseError::Result(e.to_string()))?;
        let ints = |name: &str| -> Result<arrow::array::Int64Array, WarehouseError> {
            let c = arrow::compute::cast(col(name)?, &DataType::Int64).map_err(|e| WarehouseError::Result(e.to_string()))?;
            Ok(c.as_primitive::<Int64Type>().clone())
        };
        let (a, b, i, j) = (ints("a")?, ints("b")?, ints("i")?, ints("j")?);
        let s = arrow::compute::cast(col("s")?, &DataType::Float64).map_err(|e| WarehouseError::Result(e.to_string()))?;
        let (kind, s) = (kind.as_string::<i32>(), s.as_primitive::<Float64Type>());
        for r in 0..batch.num_rows() {
            if kind.is_null(r) || [&a, &b, &i, &j].iter().any(|c| c.is_null(r)) || s.is_null(r) {
                return Err(WarehouseError::Result(format!("row {r} has a null")));
            }
            out.push(Row { kind: kind.value(r).into(), a: a.value(r), b: b.value(r), i: i.value(r), j: j.value(r), s: s.value(r) });
        }
    }
    Ok(out)
}

/// What query 1 found.
#[derive(Clone, Debug, Default)]
pub struct StatsResult {
    /// Training statistics by (segment, ride month): segment 0 `[w, h)`, 1 the holdout.
    pub groups: BTreeMap<(i64, i32), Stats>,
    /// Cleaning of `[w, t)`.
    pub counts: CleaningCounts,
    /// Production and the frozen model on `[w, t)`, where asked.
    pub scores: [Option<Metrics>; 2],
    /// The lineage hash.
    pub lineage_hash: String,
    /// The data-validation statistics of the raw rows of `[w, t)`.
    pub profile: Profile,
}

impl StatsResult {
    /// Clean rows of a segment.
    #[must_use]
    pub fn kept(&self, segment: i64) -> u64 {
        self.groups.iter().filter(|((s, _), _)| *s == segment).map(|(_, st)| st.n().round() as u64).sum()
    }

    /// Adds segment `segment` to `model`, month after month (forgetting as row by row).
    pub fn add_to(&self, segment: i64, model: &mut Model) -> Result<(), WarehouseError> {
        for ((_, month), st) in self.groups.range((segment, i32::MIN)..=(segment, i32::MAX)) {
            model.add_stats(*month, st)?;
        }
        Ok(())
    }
}

fn index(v: i64, p: usize, what: &str) -> Result<usize, WarehouseError> {
    usize::try_from(v).ok().filter(|&i| i <= p + 1).ok_or_else(|| WarehouseError::Result(format!("{what} {v} is outside 0..={}", p + 1)))
}

/// A `cx` row (the sum of column `i mod (p + 2)` of `Z = [1, x, y]` over cell `i div (p + 2)`)
/// or `cb` row (the rows of cell `i div N_BINS` in fare bin `i mod N_BINS`) of query 1.
fn add_correction_row(cells: &mut CellStats, row: &Row, p: usize) -> Result<(), WarehouseError> {
    let bad = || WarehouseError::Result(format!("{} key {} is outside {N_CELLS} cells", row.kind, row.i));
    let k = usize::try_from(row.i).map_err(|_| bad())?;
    if row.kind == "cx" {
        let (cell, col) = (k / (p + 2), k % (p + 2));
        if cell >= N_CELLS {
            return Err(bad());
        }
        if col == p + 1 {
            cells.sy[cell] += row.s;
        } else {
            cells.sx[[cell, col]] += row.s;
        }
    } else {
        if k >= N_CELLS * N_BINS {
            return Err(bad());
        }
        let key = u32::try_from(k).map_err(|_| bad())?;
        *cells.hist.entry(key).or_insert(0.0) += row.s;
    }
    Ok(())
}

fn metrics(sums: &BTreeMap<i64, f64>, from: i64) -> Metrics {
    let get = |k: i64| sums.get(&(from + k)).copied().unwrap_or(0.0);
    Metrics::from_sums(get(0).round() as u64, get(1), get(2), get(3), get(4))
}

/// Reads query 1's rows for a challenger of `p` features.
pub fn read_stats(batches: &[RecordBatch], p: usize) -> Result<StatsResult, WarehouseError> {
    let mut r = StatsResult::default();
    let mut passed = 0u64;
    let mut kept = None;
    let mut hash = None;
    let mut scores: [BTreeMap<i64, f64>; 2] = Default::default();
    for row in rows(batches)? {
        match row.kind.as_str() {
            "xx" => {
                let (i, j) = (index(row.i, p, "i")?, index(row.j, p, "j")?);
                let month = i32::try_from(row.b).map_err(|_| WarehouseError::Result(format!("month {}", row.b)))?;
                let st = r.groups.entry((row.a, month)).or_insert_with(|| Stats::new(p));
                match (i.min(j), i.max(j)) {
                    (a, b) if a == p + 1 && b == p + 1 => st.syy += row.s,
                    (a, b) if b == p + 1 => st.xty[a] += row.s,
                    (a, b) => {
                        st.xtx[[a, b]] += row.s;
                        if a != b {
                            st.xtx[[b, a]] += row.s;
                        }
                    }
                }
            }
            "cx" | "cb" => {
                let month = i32::try_from(row.b).map_err(|_| WarehouseError::Result(format!("month {}", row.b)))?;
                let st = r.groups.entry((row.a, month)).or_insert_with(|| Stats::new(p));
                add_correction_row(st.cells.get_or_insert_with(|| CellStats::new(p)), &row, p)?;
            }
            "count" => {
                let n = row.s.round() as u64;
                r.counts.raw += n;
                match row.i {
                    0 => passed += n,
                    1 => r.counts.missing += n,
                    2 => r.counts.zero_coordinates += n,
                    3 => r.counts.fare_out_of_range += n,
                    4 => r.counts.passenger_count += n,
                    5 => r.counts.outside_nyc += n,
                    other => return Err(WarehouseError::Result(format!("cleaning reason {other}"))),
                }
            }
            "kept" => kept = Some(row.s.round() as u64),
            "hash" => hash = Some(hash_digest(row.i, row.j, row.b)),
            "score" => {
                let k = usize::try_from(row.a).ok().filter(|&k| k < 2).ok_or_else(|| WarehouseError::Result(format!("model {}", row.a)))?;
                scores[k].insert(row.i, row.s);
            }
            "prow" | "pbin" | "pagg" => add_profile_row(&mut r.profile, &row)?,
            other => return Err(WarehouseError::Result(format!("kind {other:?}"))),
        }
    }
    let kept = kept.ok_or_else(|| WarehouseError::Result("no kept count".into()))?;
    if kept > passed {
        return Err(WarehouseError::Result(format!("{kept} rows kept of {passed} that passed the rules")));
    }
    r.counts.kept = kept;
    r.counts.duplicate_key = passed - kept;
    r.lineage_hash = hash.ok_or_else(|| WarehouseError::Result("no lineage hash".into()))?;
    for (k, sums) in scores.iter().enumerate() {
        if !sums.is_empty() {
            r.scores[k] = Some(metrics(sums, 0));
        }
    }
    Ok(r)
}

/// Adds one `prow` / `pbin` / `pagg` row to the profile (`a` = 0: the rows without a pickup
/// time, else `b` is the ride month).
fn add_profile_row(profile: &mut Profile, row: &Row) -> Result<(), WarehouseError> {
    let bad = |what: &str, v: i64| WarehouseError::Result(format!("{} {what} {v}", row.kind));
    let month = match row.a {
        0 => None,
        _ => Some(i32::try_from(row.b).map_err(|_| bad("month", row.b))?),
    };
    let p = profile.months.entry(month).or_default();
    if row.kind == "prow" {
        let n = row.s.round() as u64;
        p.raw += n;
        match usize::try_from(row.i).ok().filter(|&o| o <= p.drops.len()) {
            Some(0) => p.kept += n,
            Some(o) => p.drops[o - 1] += n,
            None => return Err(bad("cleaning outcome", row.i)),
        }
        return Ok(());
    }
    let k = usize::try_from(row.i).ok().filter(|&k| k < FIELDS.len()).ok_or_else(|| bad("field", row.i))?;
    let f = &mut p.fields[k];
    match (row.kind.as_str(), row.j) {
        ("pbin", -1) => f.nan += row.s.round() as u64,
        ("pbin", j) => {
            let bin = usize::try_from(j).ok().filter(|&j| j < f.hist.len()).ok_or_else(|| bad("bin", j))?;
            let n = row.s.round() as u64;
            f.hist[bin] += n;
            f.count += n;
        }
        (_, 0) => f.sum += row.s,
        (_, 1) => f.zeros += row.s.round() as u64,
        (_, j) => return Err(bad("aggregate", j)),
    }
    Ok(())
}

/// Reads a [`super::query::hash_query`]'s row: the lineage digest.
pub fn read_hash(batches: &[RecordBatch]) -> Result<String, WarehouseError> {
    let rows = rows(batches)?;
    match rows.as_slice() {
        [row] if row.kind == "hash" => Ok(hash_digest(row.i, row.j, row.b)),
        _ => Err(WarehouseError::Result(format!("{} rows for a lineage hash, expected one", rows.len()))),
    }
}

/// What query 2 found on the clean holdout rows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Paired {
    /// The challenger's scores.
    pub challenger: Metrics,
    /// Production's, when there is one.
    pub production: Option<Metrics>,
    /// Σd and Σd² of `d = |e_production| − |e_challenger|`.
    pub diff_sum: f64,
    /// Σd².
    pub diff_sq_sum: f64,
}

/// Reads query 2's rows.
pub fn read_holdout(batches: &[RecordBatch], has_production: bool) -> Result<Paired, WarehouseError> {
    let sums: BTreeMap<i64, f64> = rows(batches)?.into_iter().filter(|r| r.kind == "holdout").map(|r| (r.i, r.s)).collect();
    if sums.len() != 9 {
        return Err(WarehouseError::Result(format!("{} holdout sums, expected 9", sums.len())));
    }
    let get = |k: i64| sums.get(&k).copied().unwrap_or(0.0);
    let n = get(0).round() as u64;
    Ok(Paired {
        challenger: Metrics::from_sums(n, get(1), get(2), get(5), get(6)),
        production: has_production.then(|| Metrics::from_sums(n, get(3), get(4), get(5), get(6))),
        diff_sum: get(7),
        diff_sq_sum: get(8),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use std::sync::Arc;

    fn batch(rows: &[(&str, i64, i64, i64, i64, f64)]) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("kind", Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())) as Arc<dyn Array>),
            ("a", Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>()))),
            ("b", Arc::new(Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>()))),
            ("i", Arc::new(Int64Array::from(rows.iter().map(|r| r.3).collect::<Vec<_>>()))),
            ("j", Arc::new(Int64Array::from(rows.iter().map(|r| r.4).collect::<Vec<_>>()))),
            ("s", Arc::new(Float64Array::from(rows.iter().map(|r| r.5).collect::<Vec<_>>()))),
        ])
        .unwrap()
    }

    #[test]
    fn stats_counts_scores_and_hash_are_read() {
        // p = 1: Z = [1, x, y]; two rows (x, y) = (1, 3), (2, 5) in month 40, training.
        let b = batch(&[
            ("xx", 0, 40, 0, 0, 2.0),
            ("xx", 0, 40, 0, 1, 3.0),
            ("xx", 0, 40, 1, 1, 5.0),
            ("xx", 0, 40, 0, 2, 8.0),
            ("xx", 0, 40, 1, 2, 13.0),
            ("xx", 0, 40, 2, 2, 34.0),
            ("count", 0, 0, 0, 0, 3.0),
            ("count", 0, 0, 3, 0, 1.0),
            ("kept", 0, 0, 0, 0, 2.0),
            ("hash", 0, 0, -1, 2, 0.0),
            ("score", 1, 0, 0, 0, 2.0),
            ("score", 1, 0, 1, 0, 1.0),
        ]);
        let r = read_stats(&[b], 1).unwrap();
        let st = &r.groups[&(0, 40)];
        assert_eq!(st.xtx[[1, 0]], 3.0);
        assert_eq!(st.xty[1], 13.0);
        assert_eq!(st.syy, 34.0);
        assert_eq!(r.kept(0), 2);
        assert_eq!((r.counts.raw, r.counts.kept, r.counts.duplicate_key, r.counts.fare_out_of_range), (4, 2, 1, 1));
        assert_eq!(r.lineage_hash, "bq:ffffffffffffffff0000000000000002-0");
        assert!(r.scores[0].is_none());
        assert_eq!(r.scores[1].unwrap().mae(), 0.5);
        assert!(read_stats(&[batch(&[("xx", 0, 40, 0, 9, 1.0)])], 1).is_err());
        assert!(r.profile.months.is_empty());
        assert!(read_stats(&[batch(&[("count", 0, 0, 0, 0, 1.0)])], 1).is_err(), "no kept count");
    }

    #[test]
    fn profile_rows_are_read() {
        let b = batch(&[
            ("prow", 1, 40, 0, 0, 5.0),
            ("prow", 1, 40, 6, 0, 2.0),
            ("prow", 0, 0, 1, 0, 1.0),
            ("pbin", 1, 40, 0, 117, 6.0),
            ("pbin", 1, 40, 0, -1, 1.0),
            ("pbin", 0, 0, 0, 117, 1.0),
            ("pagg", 1, 40, 0, 0, 48.5),
            ("pagg", 1, 40, 0, 1, 0.0),
            ("pagg", 1, 40, 7, 1, 3.0),
            ("kept", 0, 0, 0, 0, 0.0),
            ("hash", 0, 0, 1, 2, 0.0),
        ]);
        let p = read_stats(&[b], 1).unwrap().profile;
        let m = &p.months[&Some(40)];
        assert_eq!((m.raw, m.kept, m.drops), (7, 5, [0, 0, 0, 0, 0, 2]));
        let fare = &m.fields[0];
        assert_eq!((fare.count, fare.nan, fare.zeros, fare.sum, fare.hist[117]), (6, 1, 0, 48.5, 6));
        assert_eq!(m.fields[7].zeros, 3);
        assert_eq!(p.months[&None].drops[0], 1);
        let bad = |row| read_stats(&[batch(&[row, ("kept", 0, 0, 0, 0, 0.0), ("hash", 0, 0, 1, 2, 0.0)])], 1).is_err();
        assert!(bad(("prow", 1, 40, 7, 0, 1.0)), "no such outcome");
        assert!(bad(("pbin", 1, 40, 8, 0, 1.0)), "no such field");
        assert!(bad(("pbin", 1, 40, 0, 2102, 1.0)), "no such bin");
        assert!(bad(("pagg", 1, 40, 0, 2, 1.0)), "no such aggregate");
    }

    #[test]
    fn holdout_sums_are_read() {
        let sums: Vec<(&str, i64, i64, i64, i64, f64)> =
            [4.0, 2.0, 1.5, 4.0, 5.0, 40.0, 420.0, 2.0, 3.0].iter().enumerate().map(|(k, s)| ("holdout", 0, 0, k as i64, 0, *s)).collect();
        let p = read_holdout(&[batch(&sums)], true).unwrap();
        assert_eq!(p.challenger.mae(), 0.5);
        assert_eq!(p.production.unwrap().mae(), 1.0);
        assert_eq!((p.diff_sum, p.diff_sq_sum), (2.0, 3.0));
        assert!(read_holdout(&[batch(&sums[..3])], true).is_err());
    }
}
