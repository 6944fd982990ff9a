//! Feature version 2 as data (the why of each column: `kernel::features_v2`).

use super::expr::build::{add, clamp, div, eq, ge, indicator, input, le, lt, mul, num, sub, var, when};
use super::expr::{Cond, Expr, Input};
use super::v1::{self, first_of, floor, is};
use super::{Slot, Spec};
use crate::fare_rules::{
    JFK_FLAT_FARE, JFK_PEAK_SURCHARGE, METER_RATE_RISE, NEWARK_SURCHARGE, RATE_CHANGE, RATE_CHANGE_DONE, SATURDAY, TUNNEL_TOLLS,
};
use crate::kernel::feature_set::FeatureSet;
use crate::kernel::features_v2::{N_FEATURES, PAIRS, ZERO_DIST_KM};

/// `fare_rules::tunnel_toll`.
fn tunnel_toll() -> Expr {
    // The toll in force before each change, else the last one.
    let changes = TUNNEL_TOLLS.windows(2).map(|w| (lt(input(Input::Seconds), num(w[1].0 as f64)), num(w[0].1))).collect();
    Expr::Case(changes, Box::new(num(TUNNEL_TOLLS[TUNNEL_TOLLS.len() - 1].1)))
}

/// `features_v2::zone` of a ride end.
fn zone(end: &str) -> Expr {
    Expr::Case(vec![(is(&format!("{end}_airport")), num(1.0)), (is(&format!("{end}_manhattan")), num(0.0))], Box::new(num(2.0)))
}

/// Version 2: v1's lets and columns (with `year_index` for `year`), then the fare-rule terms.
pub(super) fn spec() -> Spec {
    let mut lets = v1::lets();
    let hour_cells = |prefix: &str| -> Vec<String> {
        ["wd", "we"].iter().flat_map(|day| (0..24).map(move |h| format!("{prefix}_{day}_h{h:02}"))).collect()
    };
    lets.extend([
        (
            "cell".to_string(),
            add(mul(num(24.0), indicator(ge(input(Input::LocalWeekday), num(f64::from(SATURDAY))))), clamp(var("hour"), 0.0, 23.0)),
        ),
        (
            "share".into(),
            clamp(div(sub(input(Input::Seconds), num(RATE_CHANGE as f64)), num((RATE_CHANGE_DONE - RATE_CHANGE) as f64)), 0.0, 1.0),
        ),
        ("dm".into(), mul(mul(var("dist"), add(num(1.0), mul(num(METER_RATE_RISE), var("share")))), sub(num(1.0), var("jfk_manhattan")))),
    ]);
    for end in ["pickup", "dropoff"] {
        let any = Cond::Any(["jfk", "lga", "ewr"].iter().map(|a| is(&format!("{end}_{a}"))).collect());
        lets.push((format!("{end}_airport"), indicator(any)));
        lets.push((format!("{end}_zone"), zone(end)));
    }
    lets.extend([
        (
            "airport".to_string(),
            indicator(Cond::All(vec![
                Cond::Any(vec![is("pickup_airport"), is("dropoff_airport")]),
                eq(var("jfk_manhattan"), num(0.0)),
            ])),
        ),
        ("cross".into(), indicator(Cond::Ne(var("pickup_manhattan"), var("dropoff_manhattan")))),
        ("zone_lo".into(), when(le(var("pickup_zone"), var("dropoff_zone")), var("pickup_zone"), var("dropoff_zone"))),
        ("zone_hi".into(), when(le(var("pickup_zone"), var("dropoff_zone")), var("dropoff_zone"), var("pickup_zone"))),
    ]);
    // `features_v2::pair`: the unordered zone pairs but Manhattan–Manhattan, in PAIRS order.
    let pair = first_of(
        [(0.0, 1.0), (0.0, 2.0), (1.0, 1.0), (1.0, 2.0), (2.0, 2.0)]
            .iter()
            .map(|&(a, b)| Cond::All(vec![eq(var("zone_lo"), num(a)), eq(var("zone_hi"), num(b))]))
            .collect(),
    );
    lets.push(("pair".into(), pair));

    let year = Slot::Column { name: "year_index".into(), value: floor(div(input(Input::MonthIndex), num(12.0))) };
    let mut slots = v1::slots(year);
    let column = |name: &str, value: Expr| Slot::Column { name: name.into(), value };
    let post = || var("post");
    slots.extend([
        Slot::OneHot { names: hour_cells("dm_x"), index: var("cell"), value: var("dm") },
        Slot::OneHot { names: hour_cells("airport_dm_x"), index: when(is("airport"), var("cell"), num(-1.0)), value: var("dm") },
        column("river_cross", var("cross")),
        column("river_cross_x_toll", mul(var("cross"), tunnel_toll())),
        column("jfk_manhattan_x_peak_x_post", mul(mul(var("jfk_manhattan"), var("peak")), post())),
        Slot::OneHot { names: PAIRS.iter().map(|z| format!("pair_{z}")).collect(), index: var("pair"), value: num(1.0) },
        Slot::OneHot { names: PAIRS.iter().map(|z| format!("dm_x_pair_{z}")).collect(), index: var("pair"), value: var("dm") },
        column(
            "jfk_flat_fare",
            mul(
                var("jfk_manhattan"),
                when(is("post"), add(num(JFK_FLAT_FARE.1), mul(num(JFK_PEAK_SURCHARGE), var("peak"))), num(JFK_FLAT_FARE.0)),
            ),
        ),
        column("ewr_surcharge", mul(var("ewr"), when(is("post"), num(NEWARK_SURCHARGE.1), num(NEWARK_SURCHARGE.0)))),
        column("zero_dist", indicator(lt(var("dist"), num(ZERO_DIST_KM)))),
    ]);
    debug_assert_eq!(slots.iter().map(Slot::width).sum::<usize>(), N_FEATURES);
    Spec { set: FeatureSet::V2, lets, slots }
}
