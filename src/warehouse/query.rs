//! The queries of a lifecycle computed inside BigQuery: the kernel's cleaning and a feature
//! spec over a `row_id` range, then only aggregates out.
//!
//! Every query returns rows `(kind STRING, a INT64, b INT64, i INT64, j INT64, s FLOAT64)`:
//! - `xx`: `a` = segment (0 training `[w, h)`, 1 holdout `[h, t)`), `b` = ride month, `(i, j)`
//!   a cell `i ≤ j` of `ZᵀZ` for `Z = [1, x, y]` (so `XᵀX`, `Xᵀy`, `Σy²` at once); structural
//!   zeros never leave;
//! - `count`: rows per cleaning reason `i` before de-duplication; `kept`: clean rows;
//! - `score`: model `a` (0 production, 1 frozen) on the clean rows, sum `i` of
//!   [n, Σ|e|, Σe², Σy, Σy²];
//! - `holdout`: on the clean holdout rows, sum `i` of [n, Σ|e_c|, Σe_c², Σ|e_p|, Σe_p², Σy,
//!   Σy², Σd, Σd²] with `d = |e_p| − |e_c|` (challenger `c`, production `p`);
//! - `hash`: the lineage hash of the raw rows, as two 64-bit lanes `i`, `j`;
//! - `prow`, `pbin`, `pagg`: the data-validation statistics of the raw rows (see `profile_sql`).

use std::fmt::Write;

use super::sql::{self, lit};
use super::WarehouseError;
use crate::calendar::{days_in_month, DstRule, DST_1987, DST_2007, DST_2007_FROM, DST_END_UTC_HOUR, DST_START_UTC_HOUR, EPOCH_YEAR, YEARS};
use crate::geo::{NYC_LAT, NYC_LON};
use crate::kernel::cleaning::{MAX_FARE, PASSENGERS};
use crate::kernel::feature_set::FeatureSet;
use crate::kernel::features_v3::{BINS_PER_DOLLAR, BIN_LOW, N_BINS};
use crate::kernel::holdout::holdout_offset;
use crate::kernel::profile::{FIELDS, KM_PER_DEG_LAT, KM_PER_DEG_LON};
use crate::kernel::stats::Coefficients;
use crate::schema::{DROPOFF_LAT, DROPOFF_LON, FARE, KEY, PASSENGERS as PASSENGER_COUNT, PICKUP_DATETIME, PICKUP_LAT, PICKUP_LON, ROW_ID};
use crate::spec::{Spec, CORRECTION_CELL};

/// The rows of a lifecycle: `[first, end)` of `table`, the holdout from `holdout_start`.
#[derive(Clone, Debug)]
pub struct Slice {
    /// `project.dataset.table`.
    pub table: String,
    /// First row (`w`).
    pub first: u64,
    /// End row (`t`), exclusive.
    pub end: u64,
    /// First holdout row (`h`).
    pub holdout_start: u64,
}

/// A model as a query scores it: its feature version and coefficients.
#[derive(Clone, Debug)]
pub struct Scored {
    /// Its feature version.
    pub set: FeatureSet,
    /// Its coefficients.
    pub coef: Coefficients,
}

/// The source columns in schema order (`row_id` first), as the lineage hash reads them.
const SOURCE_COLUMNS: [&str; 9] = [ROW_ID, KEY, FARE, PICKUP_DATETIME, PICKUP_LON, PICKUP_LAT, DROPOFF_LON, DROPOFF_LAT, PASSENGER_COUNT];

impl Slice {
    fn check(&self) -> Result<(), WarehouseError> {
        // project.dataset.table; a domain-scoped project (`example.com:project`) has dots too.
        let parts: Vec<&str> = self.table.rsplitn(3, '.').collect();
        let plain = |p: &str, extra: &[char]| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c) || extra.contains(&c));
        let ok = parts.len() == 3 && plain(parts[0], &[]) && plain(parts[1], &[]) && plain(parts[2], &['.', ':']);
        if !ok {
            return Err(WarehouseError::Invalid(format!("table {:?} is not project.dataset.table", self.table)));
        }
        holdout_offset(self.first, self.end, self.holdout_start).map_err(|e| WarehouseError::Invalid(e.to_string()))?;
        Ok(())
    }
}

/// The kernel's timestamp parser (`calendar::parse_datetime`): the exact shape and year range,
/// then a minute-precision parse that rejects impossible dates, plus the seconds (`:60`
/// included).
fn parse_pickup() -> String {
    let c = PICKUP_DATETIME;
    let (lo, hi) = (YEARS.start(), YEARS.end());
    format!(
        "IF(REGEXP_CONTAINS({c}, r'^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[ T][0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}( UTC|Z|\\+00:00)?$') \
         AND SUBSTR({c}, 1, 4) BETWEEN '{lo:04}' AND '{hi:04}' AND SAFE_CAST(SUBSTR({c}, 18, 2) AS INT64) <= 60, \
         TIMESTAMP_ADD(SAFE.PARSE_TIMESTAMP('%Y-%m-%d %H:%M', CONCAT(SUBSTR({c}, 1, 10), ' ', SUBSTR({c}, 12, 5))), \
         INTERVAL SAFE_CAST(SUBSTR({c}, 18, 2) AS INT64) SECOND), NULL)"
    )
}

/// The UTC instant of a daylight-saving change of the ride's UTC year `_y`, by the kernel's
/// rules (`calendar::dst_rule`), not the time-zone database: both back ends agree on every
/// year, the ones before 1987 included.
fn dst_change(which: impl Fn(&DstRule) -> (u32, u32), utc_hour: u32) -> String {
    let at = |rule: &DstRule| {
        let (month, nth) = which(rule);
        let first = format!("(1 + MOD(8 - EXTRACT(DAYOFWEEK FROM DATE(_y, {month}, 1)), 7))");
        let day = if nth == 0 {
            // The last day of the month back to its Sunday; the rules never change in
            // February, so the month's length is a constant.
            let days = days_in_month(2001, month);
            format!("({days} - MOD(EXTRACT(DAYOFWEEK FROM DATE(_y, {month}, {days})) + 6, 7))")
        } else {
            format!("({first} + {})", 7 * (nth - 1))
        };
        format!("TIMESTAMP_ADD(TIMESTAMP(DATE(_y, {month}, {day})), INTERVAL {utc_hour} HOUR)")
    };
    format!("IF(_y >= {DST_2007_FROM}, {}, {})", at(&DST_2007), at(&DST_1987))
}

/// `Cleaner::check`: the first failing rule's reason (1 missing, 2 zero coordinates, 3 fare,
/// 4 passengers, 5 outside NYC), 0 when every rule passes.
fn reason() -> String {
    let coords = [PICKUP_LAT, PICKUP_LON, DROPOFF_LAT, DROPOFF_LON];
    let mut missing: Vec<String> = coords.iter().chain([&PASSENGER_COUNT, &FARE]).map(|c| format!("{c} IS NULL")).collect();
    missing.push("ts IS NULL".into());
    missing.push(format!("IS_NAN({FARE})"));
    missing.extend(coords.iter().map(|c| format!("IS_NAN({c}) OR IS_INF({c})")));
    let zero = coords.iter().map(|c| format!("{c} = 0")).collect::<Vec<_>>().join(" AND ");
    let inside = |lat: &str, lon: &str| {
        format!(
            "{lat} BETWEEN {} AND {} AND {lon} BETWEEN {} AND {}",
            lit(NYC_LAT.0),
            lit(NYC_LAT.1),
            lit(NYC_LON.0),
            lit(NYC_LON.1)
        )
    };
    format!(
        "CASE WHEN {} THEN 1 WHEN {zero} THEN 2 WHEN NOT ({FARE} > 0 AND {FARE} < {}) THEN 3 \
         WHEN {PASSENGER_COUNT} < {} OR {PASSENGER_COUNT} > {} THEN 4 \
         WHEN NOT ({} AND {}) THEN 5 ELSE 0 END",
        missing.join(" OR "),
        lit(MAX_FARE),
        PASSENGERS.start(),
        PASSENGERS.end(),
        inside(PICKUP_LAT, PICKUP_LON),
        inside(DROPOFF_LAT, DROPOFF_LON),
    )
}

/// `WITH …` up to `feat`: the slice, parsed, checked (`checked.reason`), cleaned and
/// de-duplicated (`clean`: the first row of a key among rows passing every other rule, as
/// the kernel's one cleaning state across the range), the spec's named values level by
/// level, and every given version's slot columns (`feat`).
fn pipeline(slice: &Slice, specs: &[&Spec]) -> Result<(String, sql::SlotColumns), WarehouseError> {
    slice.check()?;
    let mut q = String::new();
    let _ = write!(
        q,
        "WITH src AS (SELECT {cols} FROM `{table}` WHERE {ROW_ID} >= {first} AND {ROW_ID} < {end}),\n\
         parsed AS (SELECT *, {ts} AS ts FROM src),\n\
         checked AS (SELECT *, {reason} AS reason FROM parsed),\n\
         dedup AS (SELECT *, EXTRACT(YEAR FROM ts) AS _y FROM checked WHERE reason = 0 \
         QUALIFY {KEY} IS NULL OR ROW_NUMBER() OVER (PARTITION BY {KEY} ORDER BY {ROW_ID}) = 1),\n\
         zoned AS (SELECT *, DATETIME(TIMESTAMP_ADD(ts, INTERVAL IF(ts >= _dst_start AND ts < _dst_end, -4, -5) HOUR)) AS ldt \
         FROM (SELECT *, {dst_start} AS _dst_start, {dst_end} AS _dst_end FROM dedup)),\n\
         clean AS (SELECT {ROW_ID}, IF({ROW_ID} >= {h}, 1, 0) AS seg, {FARE} AS y, \
         (EXTRACT(YEAR FROM ts) - {EPOCH_YEAR}) * 12 + EXTRACT(MONTH FROM ts) - 1 AS m, \
         {PICKUP_LAT} AS _plat, {PICKUP_LON} AS _plon, {DROPOFF_LAT} AS _dlat, {DROPOFF_LON} AS _dlon, \
         CAST({PASSENGER_COUNT} AS FLOAT64) AS _pass, CAST(UNIX_SECONDS(ts) AS FLOAT64) AS _sec, \
         CAST(EXTRACT(HOUR FROM ldt) * 3600 + EXTRACT(MINUTE FROM ldt) * 60 + EXTRACT(SECOND FROM ldt) AS FLOAT64) AS _sod, \
         CAST(MOD(EXTRACT(DAYOFWEEK FROM ldt) + 5, 7) AS FLOAT64) AS _wd, CAST(EXTRACT(MONTH FROM ldt) AS FLOAT64) AS _lmon, \
         CAST((EXTRACT(YEAR FROM ts) - {EPOCH_YEAR}) * 12 + EXTRACT(MONTH FROM ts) - 1 AS FLOAT64) AS _mi FROM zoned)",
        cols = SOURCE_COLUMNS.join(", "),
        table = slice.table,
        first = slice.first,
        end = slice.end,
        h = slice.holdout_start,
        ts = parse_pickup(),
        reason = reason(),
        dst_start = dst_change(|r| r.start, DST_START_UTC_HOUR),
        dst_end = dst_change(|r| r.end, DST_END_UTC_HOUR),
    );
    let levels = sql::let_levels(specs.iter().copied()).map_err(WarehouseError::Invalid)?;
    let mut prev = "clean".to_string();
    for (n, level) in levels.iter().enumerate() {
        let items: Vec<String> = level.iter().map(|(name, e)| format!("{} AS v_{name}", sql::expr(e))).collect();
        let _ = write!(q, ",\nl{n} AS (SELECT *, {} FROM {prev})", items.join(", "));
        prev = format!("l{n}");
    }
    let cols = sql::SlotColumns::new(specs);
    let list = |items: &[String]| items.iter().map(|i| format!(", {i}")).collect::<String>();
    let _ = write!(q, ",\nslots AS (SELECT *{} FROM {prev}),\nfeat AS (SELECT *{} FROM slots)", list(&cols.raw), list(&cols.index));
    Ok((q, cols))
}

/// `[STRUCT(0 AS i, 1 AS v), <the slots>, STRUCT(p + 1 AS i, y AS v)]`: one row of `Z = [1, x, y]`, sparsely.
fn design_row(spec: &Spec, cols: &sql::SlotColumns) -> String {
    let v = spec.set.version();
    let mut items = vec!["STRUCT(0 AS i, 1e0 AS v)".to_string()];
    for k in 0..spec.slots.len() {
        let (value, index) = cols.of(v, k);
        items.push(format!("STRUCT({index} AS i, {value} AS v)"));
    }
    items.push(format!("STRUCT({} AS i, y AS v)", spec.p() + 1));
    format!("[{}]", items.join(", "))
}

/// Sums as rows `(kind, a, 0, i, 0, s)`, `i` the position in `sums`; empty slices give 0.
fn sums_rows(kind: &str, a: usize, sums: &[String], from: &str) -> String {
    let list: Vec<String> = sums.iter().map(|s| format!("IFNULL({s}, 0e0)")).collect();
    format!(
        "SELECT '{kind}' AS kind, {a} AS a, 0 AS b, q AS i, 0 AS j, s FROM (SELECT [{}] AS sums FROM {from}), UNNEST(sums) AS s WITH OFFSET q",
        list.join(", ")
    )
}

fn fingerprint(lane: &str) -> String {
    let cols: Vec<String> = SOURCE_COLUMNS.iter().map(|c| format!("IFNULL(CONCAT('v', CAST({c} AS STRING)), 'n')")).collect();
    format!("IFNULL(BIT_XOR(FARM_FINGERPRINT(CONCAT('{lane}', {}))), 0)", cols.join(", '|', "))
}

/// The lineage digest of the two lanes and the row count the `hash` row carries (the count:
/// two copies of a row would cancel in the XOR).
#[must_use]
pub fn hash_digest(a: i64, b: i64, rows: i64) -> String {
    format!("bq:{:016x}{:016x}-{rows}", a as u64, b as u64)
}

/// The lineage hash of `[first, end)` alone (`taxifare check --deep`): one `hash` row.
pub fn hash_query(table: &str, first: u64, end: u64) -> Result<String, WarehouseError> {
    let slice = Slice { table: table.into(), first, end, holdout_start: end };
    slice.check()?;
    Ok(format!(
        "WITH src AS (SELECT {cols} FROM `{table}` WHERE {ROW_ID} >= {first} AND {ROW_ID} < {end})\n\
         SELECT 'hash' AS kind, 0 AS a, COUNT(*) AS b, {} AS i, {} AS j, 0e0 AS s FROM src",
        fingerprint("a"),
        fingerprint("b"),
        cols = SOURCE_COLUMNS.join(", "),
    ))
}

/// The data-validation statistics of the raw rows (`kernel::profile`), as more common table
/// expressions after `checked` and more result rows of query 1 (no column more is read):
/// - `prow`: `(a, b)` the ride month (`a` = 0 without a pickup time), `i` the row's cleaning
///   outcome (0 kept, 1 + the index of [`crate::kernel::profile::REASONS`]), `s` rows;
/// - `pbin`: `i` the field of [`FIELDS`], `j` its histogram bin (−1: null or not finite), `s` rows;
/// - `pagg`: `i` the field, `j` 0 the sum of its finite values, 1 its zeros.
///
/// The bins are the profiler's arithmetic: `(v − lo) · (1 / width)` with the same inverse
/// literal, floored, underflow 0 and overflow `bins + 1`.
fn profile_sql() -> (String, String) {
    // One struct per field, its index and bins with it: the emulator misnumbers `WITH OFFSET`
    // once it leaves its SELECT.
    let values = [
        FARE.to_string(),
        "SQRT(_dx * _dx + _dy * _dy)".into(),
        PICKUP_LAT.into(),
        PICKUP_LON.into(),
        DROPOFF_LAT.into(),
        DROPOFF_LON.into(),
        "CAST(_hour AS FLOAT64)".into(),
        format!("CAST({PASSENGER_COUNT} AS FLOAT64)"),
    ];
    let structs: Vec<String> = FIELDS
        .iter()
        .zip(&values)
        .enumerate()
        .map(|(k, (b, v))| format!("STRUCT({k} AS fi, {v} AS v, {} AS lo, {} AS inv, {} AS top)", lit(b.lo), lit(1.0 / b.width), b.bins))
        .collect();
    let finite = |cols: &[&str]| cols.iter().map(|c| format!("NOT IS_NAN({c}) AND NOT IS_INF({c})")).collect::<Vec<_>>().join(" AND ");
    let coords = [PICKUP_LON, PICKUP_LAT, DROPOFF_LON, DROPOFF_LAT];
    let values = format!("[{}]", structs.join(", "));
    let ctes = format!(
        ",\np0 AS (SELECT ts, {FARE}, {PICKUP_LAT}, {PICKUP_LON}, {DROPOFF_LAT}, {DROPOFF_LON}, {PASSENGER_COUNT}, \
         IF(reason = 0 AND {KEY} IS NOT NULL AND ROW_NUMBER() OVER (PARTITION BY {KEY}, reason ORDER BY {ROW_ID}) > 1, 6, reason) AS outcome, \
         IFNULL(EXTRACT(YEAR FROM ts), {EPOCH_YEAR}) AS _y FROM checked),\n\
         p1 AS (SELECT *, IF(ts IS NULL, 0, 1) AS pm, IFNULL((EXTRACT(YEAR FROM ts) - {EPOCH_YEAR}) * 12 + EXTRACT(MONTH FROM ts) - 1, 0) AS pb, \
         EXTRACT(HOUR FROM DATETIME(TIMESTAMP_ADD(ts, INTERVAL IF(ts >= {dst_start} AND ts < {dst_end}, -4, -5) HOUR))) AS _hour, \
         IF({all_finite}, ({DROPOFF_LON} - {PICKUP_LON}) * {klon}, NULL) AS _dx, IF({all_finite}, ({DROPOFF_LAT} - {PICKUP_LAT}) * {klat}, NULL) AS _dy FROM p0),\n\
         pv AS (SELECT pm, pb, e.fi AS fi, e.v AS v, e.lo AS lo, e.inv AS inv, e.top AS top, \
         (e.v IS NOT NULL AND NOT IS_NAN(e.v) AND NOT IS_INF(e.v)) AS fin FROM p1, UNNEST({values}) AS e),\n\
         px AS (SELECT pm, pb, fi, fin, top, IF(fin, (v - lo) * inv, 0e0) AS x FROM pv)",
        all_finite = finite(&coords),
        klon = lit(KM_PER_DEG_LON),
        klat = lit(KM_PER_DEG_LAT),
        dst_start = dst_change(|r| r.start, DST_START_UTC_HOUR),
        dst_end = dst_change(|r| r.end, DST_END_UTC_HOUR),
    );
    let selects = "\nUNION ALL SELECT 'prow', pm, pb, outcome, 0, CAST(COUNT(*) AS FLOAT64) FROM p1 GROUP BY pm, pb, outcome\n\
         UNION ALL SELECT 'pbin', pm, pb, fi, bin, CAST(COUNT(*) AS FLOAT64) FROM (SELECT pm, pb, fi, \
         CASE WHEN NOT fin THEN -1 WHEN x < 0 THEN 0 WHEN x >= top THEN top + 1 ELSE CAST(FLOOR(x) AS INT64) + 1 END AS bin FROM px) \
         GROUP BY pm, pb, fi, bin\n\
         UNION ALL SELECT 'pagg', pm, pb, fi, 0, SUM(IF(fin, v, 0e0)) FROM pv GROUP BY pm, pb, fi\n\
         UNION ALL SELECT 'pagg', pm, pb, fi, 1, CAST(COUNTIF(fin AND v = 0) AS FLOAT64) FROM pv GROUP BY pm, pb, fi"
        .to_string();
    (ctes, selects)
}

/// A scored model's prediction: its linear part, plus its cell's median correction for a
/// version that has one (`Coefficients::predict`'s association: linear, then the shift).
fn prediction(model: &Scored, cols: &sql::SlotColumns) -> String {
    let linear = sql::prediction(&Spec::of(model.set), cols, model.coef.intercept, &model.coef.beta);
    if model.coef.correction.is_empty() {
        return linear;
    }
    let shifts: Vec<String> = model.coef.correction.iter().map(|d| lit(*d)).collect();
    format!("({linear} + [{}][OFFSET(CAST(v_{CORRECTION_CELL} AS INT64))])", shifts.join(", "))
}

/// Query 1's rows of the median correction's statistics (a challenger of feature version 3),
/// from `z`'s cell `cc` and label `y`: `cx` the sums of `Z = [1, x, y]` per cell, `i` =
/// `cell · (p + 2) + column`; `cb` the rows per cell and fare bin, `i` = `cell · N_BINS + bin`
/// (the bin as `features_v3::fare_bin`).
fn correction_sql(p: usize) -> String {
    let bin = format!(
        "LEAST(GREATEST(CAST(FLOOR((y - {low}) * {per} + 5e-1) AS INT64), 0), {last})",
        low = lit(BIN_LOW),
        per = lit(BINS_PER_DOLLAR),
        last = N_BINS - 1
    );
    format!(
        "\nUNION ALL SELECT 'cx', seg, m, k, 0, SUM(v) FROM (SELECT seg, m, cc * {d} + x.i AS k, x.v AS v FROM z, UNNEST(zs) AS x \
         WHERE x.i >= 0 AND x.v != 0) GROUP BY seg, m, k\n\
         UNION ALL SELECT 'cb', seg, m, k, 0, CAST(COUNT(*) AS FLOAT64) FROM (SELECT seg, m, cc * {N_BINS} + {bin} AS k FROM z) GROUP BY seg, m, k",
        d = p + 2
    )
}

/// Query 1 of a lifecycle: training statistics of `[w, h)` and `[h, t)` by ride month for
/// the challenger's version, the cleaning counts, the given models scored on `[w, t)`
/// (`scored[0]` production, `scored[1]` frozen) and the lineage hash.
pub fn stats_query(slice: &Slice, challenger: FeatureSet, scored: [Option<&Scored>; 2]) -> Result<String, WarehouseError> {
    let spec = Spec::of(challenger);
    let extra: Vec<Spec> = scored.iter().flatten().map(|s| s.set).filter(|s| *s != challenger).map(Spec::of).collect();
    let mut specs = vec![&spec];
    specs.extend(extra.iter());
    let (mut q, cols) = pipeline(slice, &specs)?;
    let (profile_ctes, profile_selects) = profile_sql();
    q.push_str(&profile_ctes);
    let _ = write!(
        q,
        ",\nz AS (SELECT seg, m, {} AS zs{} FROM feat)\n\
         SELECT 'xx' AS kind, seg AS a, m AS b, x.i AS i, u.i AS j, SUM(x.v * u.v) AS s \
         FROM z, UNNEST(zs) AS x WITH OFFSET px, UNNEST(zs) AS u WITH OFFSET pu \
         WHERE px <= pu AND x.i >= 0 AND u.i >= 0 AND x.v != 0 AND u.v != 0 GROUP BY a, b, i, j\n\
         UNION ALL SELECT 'count', 0, 0, reason, 0, CAST(COUNT(*) AS FLOAT64) FROM checked GROUP BY reason\n\
         UNION ALL SELECT 'kept', 0, 0, 0, 0, CAST(COUNT(*) AS FLOAT64) FROM clean\n\
         UNION ALL SELECT 'hash', 0, COUNT(*), {}, {}, 0e0 FROM src{profile_selects}",
        design_row(&spec, &cols),
        if challenger.has_correction() { format!(", CAST(v_{CORRECTION_CELL} AS INT64) AS cc, y") } else { String::new() },
        fingerprint("a"),
        fingerprint("b"),
    );
    if challenger.has_correction() {
        q.push_str(&correction_sql(spec.p()));
    }
    for (k, model) in scored.iter().enumerate() {
        let Some(model) = model else { continue };
        let pred = prediction(model, &cols);
        let from = format!("(SELECT y, {pred} - y AS e FROM feat)");
        let sums = ["CAST(COUNT(*) AS FLOAT64)", "SUM(ABS(e))", "SUM(e * e)", "SUM(y)", "SUM(y * y)"].map(String::from);
        let _ = write!(q, "\nUNION ALL {}", sums_rows("score", k, &sums, &from));
    }
    Ok(q)
}

/// Query 2: the challenger (trained on `[w, h)`) and production on the clean holdout rows.
pub fn holdout_query(slice: &Slice, challenger: &Scored, production: Option<&Scored>) -> Result<String, WarehouseError> {
    let specs: Vec<Spec> = std::iter::once(challenger.set)
        .chain(production.map(|p| p.set).filter(|s| *s != challenger.set))
        .map(Spec::of)
        .collect();
    let refs: Vec<&Spec> = specs.iter().collect();
    let (mut q, cols) = pipeline(slice, &refs)?;
    let pc = prediction(challenger, &cols);
    let pp = production.map_or_else(|| "CAST(NULL AS FLOAT64)".into(), |p| prediction(p, &cols));
    let _ = write!(
        q,
        ",\nerrs AS (SELECT y, ABS({pc} - y) AS ac, ABS({pp} - y) AS ap FROM feat WHERE seg = 1)\n{}",
        sums_rows(
            "holdout",
            0,
            &[
                "CAST(COUNT(*) AS FLOAT64)",
                "SUM(ac)",
                "SUM(ac * ac)",
                "SUM(ap)",
                "SUM(ap * ap)",
                "SUM(y)",
                "SUM(y * y)",
                "SUM(ap - ac)",
                "SUM((ap - ac) * (ap - ac))",
            ]
            .map(String::from),
            "errs"
        )
    );
    Ok(q)
}

/// The features of every clean row of `[first, end)` in version `set`, sparsely: rows
/// `(row_id, i, v)` with `i` the 0-based feature column (the intercept and label left out).
pub fn features_query(table: &str, first: u64, end: u64, set: FeatureSet) -> Result<String, WarehouseError> {
    let spec = Spec::of(set);
    let slice = Slice { table: table.into(), first, end, holdout_start: end };
    let (mut q, cols) = pipeline(&slice, &[&spec])?;
    let _ = write!(
        q,
        "\nSELECT {ROW_ID}, x.i - 1 AS i, x.v AS v FROM feat, UNNEST({}) AS x \
         WHERE x.i >= 1 AND x.i <= {} AND x.v != 0 ORDER BY {ROW_ID}, i",
        design_row(&spec, &cols),
        spec.p()
    );
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::model::{Model, Settings};

    /// Version 3's query 1 returns the correction's statistics, and a v3 model is scored
    /// with its cell's shift; v2's queries have neither.
    #[test]
    fn feature_version_3_adds_the_correction() {
        let slice = Slice { table: "p.d.t".into(), first: 0, end: 100, holdout_start: 80 };
        let v3 = stats_query(&slice, FeatureSet::V3, [None, None]).unwrap();
        assert!(v3.contains("'cx'") && v3.contains("'cb'") && v3.contains("v_corr_cell"));
        let v2 = stats_query(&slice, FeatureSet::V2, [None, None]).unwrap();
        assert!(!v2.contains("'cx'") && !v2.contains("corr_cell"));
        let mut m = Model::with_features(Settings::default(), FeatureSet::V3).unwrap();
        m.partial_fit(crate::generator::MonthRides::new(1, crate::calendar::Month::parse("2012-01").unwrap(), 300, 300, false)).unwrap();
        let scored = Scored { set: FeatureSet::V3, coef: m.coefficients().unwrap().clone() };
        let q = stats_query(&slice, FeatureSet::V2, [Some(&scored), None]).unwrap();
        assert!(q.contains("[OFFSET(CAST(v_corr_cell AS INT64))]") && !q.contains("'cx'"));
        assert!(holdout_query(&slice, &scored, None).unwrap().contains("[OFFSET(CAST(v_corr_cell AS INT64))]"));
    }
}
