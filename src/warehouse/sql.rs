//! The feature spec compiled to BigQuery SQL: literals that round-trip, the spec's named
//! values as a chain of common table expressions (one per dependency level), its slots as
//! `(index, value)` columns.

use std::collections::HashMap;
use std::fmt::Write;

use crate::spec::expr::{Cond, Expr, Func, Input};
use crate::spec::{Slot, Spec};

/// An `f64` literal: shortest round-trip digits in e-notation, so that every engine reads a
/// FLOAT64 (a plain decimal is a NUMERIC to some) with the same bits.
#[must_use]
pub fn lit(v: f64) -> String {
    if v.is_nan() {
        "CAST('NaN' AS FLOAT64)".into()
    } else if v.is_infinite() {
        format!("CAST('{}inf' AS FLOAT64)", if v < 0.0 { "-" } else { "" })
    } else if v < 0.0 || (v == 0.0 && v.is_sign_negative()) {
        format!("(-{:e})", -v)
    } else {
        format!("{v:e}")
    }
}

/// Column of an input in the `clean` relation (all FLOAT64).
#[must_use]
pub fn input_column(i: Input) -> &'static str {
    match i {
        Input::PickupLat => "_plat",
        Input::PickupLon => "_plon",
        Input::DropoffLat => "_dlat",
        Input::DropoffLon => "_dlon",
        Input::Passengers => "_pass",
        Input::Seconds => "_sec",
        Input::LocalSecondOfDay => "_sod",
        Input::LocalWeekday => "_wd",
        Input::LocalMonth => "_lmon",
        Input::MonthIndex => "_mi",
    }
}

/// SQL column of a named value.
fn named(name: &str) -> String {
    format!("v_{name}")
}

/// An expression as SQL.
#[must_use]
pub fn expr(e: &Expr) -> String {
    match e {
        Expr::Num(v) => lit(*v),
        Expr::In(i) => input_column(*i).into(),
        Expr::Ref(n) => named(n),
        Expr::Add(a, b) => format!("({} + {})", expr(a), expr(b)),
        Expr::Sub(a, b) => format!("({} - {})", expr(a), expr(b)),
        Expr::Mul(a, b) => format!("({} * {})", expr(a), expr(b)),
        // Every divisor of the specs is a non-zero constant: plain division never raises.
        Expr::Div(a, b) => format!("({} / {})", expr(a), expr(b)),
        Expr::Call(f, a) => {
            let name = match f {
                Func::Sin => "SIN",
                Func::Cos => "COS",
                Func::Asin => "ASIN",
                Func::Sqrt => "SQRT",
                Func::Abs => "ABS",
                Func::Floor => "FLOOR",
            };
            format!("{name}({})", expr(a))
        }
        Expr::Clamp(a, lo, hi) => format!("LEAST(GREATEST({}, {}), {})", expr(a), lit(*lo), lit(*hi)),
        Expr::Case(arms, default) => {
            let mut s = String::from("CASE");
            for (c, v) in arms {
                let _ = write!(s, " WHEN {} THEN {}", cond(c), expr(v));
            }
            let _ = write!(s, " ELSE {} END", expr(default));
            s
        }
    }
}

/// A condition as SQL.
#[must_use]
pub fn cond(c: &Cond) -> String {
    let join = |cs: &[Cond], op: &str| format!("({})", cs.iter().map(cond).collect::<Vec<_>>().join(op));
    match c {
        Cond::Lt(a, b) => format!("({} < {})", expr(a), expr(b)),
        Cond::Le(a, b) => format!("({} <= {})", expr(a), expr(b)),
        Cond::Ge(a, b) => format!("({} >= {})", expr(a), expr(b)),
        Cond::Eq(a, b) => format!("({} = {})", expr(a), expr(b)),
        Cond::Ne(a, b) => format!("({} != {})", expr(a), expr(b)),
        Cond::All(cs) => join(cs, " AND "),
        Cond::Any(cs) => join(cs, " OR "),
        Cond::Not(c) => format!("(NOT {})", cond(c)),
    }
}

/// The named values of several specs (shared names must agree), grouped by dependency
/// level: a level refers only to the inputs and to earlier levels.
pub fn let_levels<'a>(specs: impl IntoIterator<Item = &'a Spec>) -> Result<Vec<Vec<(String, Expr)>>, String> {
    let mut depth: HashMap<String, usize> = HashMap::new();
    let mut defined: HashMap<String, Expr> = HashMap::new();
    let mut levels: Vec<Vec<(String, Expr)>> = Vec::new();
    for spec in specs {
        for (name, e) in &spec.lets {
            if let Some(prev) = defined.get(name) {
                if prev != e {
                    return Err(format!("the feature versions define {name:?} differently"));
                }
                continue;
            }
            let mut refs = Vec::new();
            e.refs(&mut refs);
            let d = refs
                .iter()
                .map(|r| depth.get(r).copied().ok_or_else(|| format!("{name:?} refers to {r:?} before it is defined")))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .max()
                .map_or(0, |m| m + 1);
            if levels.len() <= d {
                levels.resize_with(d + 1, Vec::new);
            }
            levels[d].push((name.clone(), e.clone()));
            depth.insert(name.clone(), d);
            defined.insert(name.clone(), e.clone());
        }
    }
    Ok(levels)
}

/// The slot columns of several versions. A slot two versions share (same columns, same
/// expression: v2 restates all of v1's but `year`) is computed once. One-hot indices go
/// through a raw column first, so that their (long) expression is written once.
#[derive(Debug, Default)]
pub struct SlotColumns {
    names: HashMap<(u16, usize), (String, String)>,
    /// Select items of the first relation: values and raw one-hot indices.
    pub raw: Vec<String>,
    /// Select items of the second: each slot's column in the augmented design (1 + column;
    /// −1 where a one-hot group has no column on the row).
    pub index: Vec<String>,
}

impl SlotColumns {
    /// The columns of several specs' slots.
    #[must_use]
    pub fn new(specs: &[&Spec]) -> Self {
        let mut cols = Self::default();
        let mut seen: Vec<(usize, &Slot, (String, String))> = Vec::new();
        for spec in specs {
            let v = spec.set.version();
            for (k, (slot, at)) in spec.slots.iter().zip(spec.offsets()).enumerate() {
                if let Some((_, _, names)) = seen.iter().find(|(a, s, _)| *a == at && *s == slot) {
                    cols.names.insert((v, k), names.clone());
                    continue;
                }
                let n = seen.len();
                let (value, index) = (format!("s{n}"), format!("s{n}_i"));
                match slot {
                    Slot::Column { value: e, .. } => {
                        cols.raw.push(format!("{} AS {value}", expr(e)));
                        cols.index.push(format!("{} AS {index}", at + 1));
                    }
                    Slot::OneHot { names, index: i, value: e } => {
                        cols.raw.push(format!("{} AS {value}", expr(e)));
                        cols.raw.push(format!("{} AS s{n}_x", expr(i)));
                        cols.index.push(format!(
                            "CASE WHEN s{n}_x >= 0 AND s{n}_x < {w} THEN CAST(s{n}_x AS INT64) + {base} ELSE -1 END AS {index}",
                            w = names.len(),
                            base = at + 1
                        ));
                    }
                }
                cols.names.insert((v, k), (value.clone(), index.clone()));
                seen.push((at, slot, (value, index)));
            }
        }
        cols
    }

    /// The value and index columns of slot `k` of version `v`.
    #[must_use]
    pub fn of(&self, v: u16, k: usize) -> (&str, &str) {
        self.names.get(&(v, k)).map_or(("0e0", "-1"), |(a, b)| (a.as_str(), b.as_str()))
    }
}

/// A model's prediction from its version's slot columns: intercept + Σ βⱼ·xⱼ.
#[must_use]
pub fn prediction(spec: &Spec, cols: &SlotColumns, intercept: f64, beta: &[f64]) -> String {
    let v = spec.set.version();
    // Rust's dot product sums the terms, then adds the intercept: the same association here.
    let mut terms = Vec::new();
    for (k, (slot, at)) in spec.slots.iter().zip(spec.offsets()).enumerate() {
        let (value, index) = cols.of(v, k);
        match slot {
            Slot::Column { .. } => {
                if beta[at] != 0.0 {
                    terms.push(format!("{value} * {}", lit(beta[at])));
                }
            }
            Slot::OneHot { names, .. } => {
                let coefs: Vec<String> = beta[at..at + names.len()].iter().map(|b| lit(*b)).collect();
                terms.push(format!(
                    "IF({index} > 0, {value} * [{}][OFFSET({index} - {})], 0e0)",
                    coefs.join(", "),
                    at + 1
                ));
            }
        }
    }
    if terms.is_empty() {
        terms.push("0e0".into());
    }
    format!("({} + ({}))", lit(intercept), terms.join(" + "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_round_trip_in_e_notation() {
        for v in [0.0, 1.0, -74.3, 40.5, 0.017_453_292_519_943_295, 6371.0088 * 2.0, 1e-300, 5.33, 1_346_731_200.0] {
            let s = lit(v);
            assert!(s.contains('e'), "{s}");
            let parsed: f64 = s.trim_start_matches("(-").trim_end_matches(')').parse().unwrap();
            assert_eq!(if s.starts_with("(-") { -parsed } else { parsed }.to_bits(), v.to_bits(), "{s}");
        }
        assert_eq!(lit(-0.0), "(-0e0)");
    }

    #[test]
    fn every_version_compiles_in_levels() {
        use crate::kernel::feature_set::FeatureSet;
        let specs: Vec<Spec> = FeatureSet::ALL.iter().map(|s| Spec::of(*s)).collect();
        let levels = let_levels(&specs).unwrap();
        let total: usize = levels.iter().map(Vec::len).sum();
        assert_eq!(total, specs.last().unwrap().lets.len(), "v2's lets include v1's");
        assert!(levels.len() >= 3);
        let one = SlotColumns::new(&[&specs[1]]);
        let both = SlotColumns::new(&[&specs[1], &specs[0]]);
        assert_eq!(both.raw.len(), one.raw.len() + 1, "v1 adds only its `year`");
        assert_eq!(both.of(1, 0), both.of(2, 0));
        assert_ne!(both.of(1, 5), both.of(2, 5));
    }
}
