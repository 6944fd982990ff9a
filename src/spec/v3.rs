//! Feature version 3 as data: version 2's lets and columns, and the median correction's cell
//! as a named value (`kernel::features_v3::cell`), which the warehouse groups by.

use super::expr::build::{add, eq, ge, indicator, mul, num, var};
use super::expr::{Cond, Expr};
use super::{v2, Spec};
use crate::kernel::feature_set::FeatureSet;
use crate::kernel::features_v3::{ZoneGroup, FINE_EDGES_KM, N_ZONE_GROUPS, PAIR_GROUPS};

/// The named value holding a row's correction cell, `3 · band + zone group`.
pub const CORRECTION_CELL: &str = "corr_cell";

/// Version 3: version 2, plus `corr_band` (the number of [`FINE_EDGES_KM`] ≤ the distance),
/// `corr_group` (the zone group of v2's `pair`, Manhattan–Manhattan without a pair) and
/// [`CORRECTION_CELL`].
pub(super) fn spec() -> Spec {
    let mut s = v2::spec();
    let band = FINE_EDGES_KM.iter().fold(num(0.0), |acc, &e| add(acc, indicator(ge(var("dist"), num(e)))));
    let arms: Vec<(Cond, Expr)> = PAIR_GROUPS
        .iter()
        .enumerate()
        .filter(|(_, g)| **g != ZoneGroup::Manhattan)
        .map(|(k, g)| (eq(var("pair"), num(k as f64)), num(f64::from(*g as u8))))
        .collect();
    let group = Expr::Case(arms, Box::new(num(f64::from(ZoneGroup::Manhattan as u8))));
    s.lets.extend([
        ("corr_band".to_string(), band),
        ("corr_group".to_string(), group),
        (CORRECTION_CELL.to_string(), add(mul(num(N_ZONE_GROUPS as f64), var("corr_band")), var("corr_group"))),
    ]);
    Spec { set: FeatureSet::V3, ..s }
}
