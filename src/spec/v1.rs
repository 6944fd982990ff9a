//! Feature version 1 as data (the why of each column: `kernel::features`). Every constant
//! comes from the module the kernel takes it from; the operations are the kernel's, in its
//! order, so that both back ends round alike.

use super::expr::build::{add, call, clamp, div, ge, indicator, input, le, lt, mul, nonzero, num, sub, var, when};
use super::expr::{Cond, Expr, Func, Input};
use super::{Slot, Spec};
use crate::fare_rules::{MTA_TAX_START, NIGHT_FROM_HOUR, NIGHT_UNTIL_HOUR, PEAK_FROM_HOUR, PEAK_UNTIL_HOUR, RATE_CHANGE, SATURDAY};
use crate::geo::{
    self, ManhattanBand, Point, AIRPORTS, AIRPORT_BOX_DEG, AIRPORT_RADIUS_KM, EARTH_RADIUS_KM, MANHATTAN_HALF_WIDTH_KM, MANHATTAN_SPINE,
};
use crate::kernel::feature_set::FeatureSet;
use crate::kernel::features::{self, GEOHASHES, PASSENGER_SCALE, YEAR_SCALE_MONTHS};

/// Degrees to radians, as `f64::to_radians` multiplies.
const RAD: f64 = std::f64::consts::PI / 180.0;

/// A point given by two expressions (latitude, longitude).
#[derive(Clone)]
pub(super) struct At {
    pub lat: Expr,
    pub lon: Expr,
}

impl At {
    pub(super) fn pickup() -> Self {
        Self { lat: input(Input::PickupLat), lon: input(Input::PickupLon) }
    }
    pub(super) fn dropoff() -> Self {
        Self { lat: input(Input::DropoffLat), lon: input(Input::DropoffLon) }
    }
    fn fixed(p: Point) -> Self {
        Self { lat: num(p.lat), lon: num(p.lon) }
    }
}

fn sin(e: Expr) -> Expr {
    call(Func::Sin, e)
}
fn cos(e: Expr) -> Expr {
    call(Func::Cos, e)
}
fn abs(e: Expr) -> Expr {
    call(Func::Abs, e)
}
pub(super) fn floor(e: Expr) -> Expr {
    call(Func::Floor, e)
}
fn square(e: Expr) -> Expr {
    mul(e.clone(), e)
}

/// `geo::haversine_km`.
fn haversine(a: &At, b: &At) -> Expr {
    let (la1, la2) = (mul(a.lat.clone(), num(RAD)), mul(b.lat.clone(), num(RAD)));
    let dlat = sub(la2.clone(), la1.clone());
    let dlon = mul(sub(b.lon.clone(), a.lon.clone()), num(RAD));
    let h = add(
        square(sin(div(dlat, num(2.0)))),
        mul(mul(cos(la1), cos(la2)), square(sin(div(dlon, num(2.0))))),
    );
    mul(num(2.0 * EARTH_RADIUS_KM), call(Func::Asin, call(Func::Sqrt, h)))
}

/// `geo::manhattan_km`.
fn manhattan(a: &At, b: &At) -> Expr {
    let coslat = cos(mul(div(add(a.lat.clone(), b.lat.clone()), num(2.0)), num(RAD)));
    mul(
        num(EARTH_RADIUS_KM * RAD),
        add(abs(sub(b.lat.clone(), a.lat.clone())), mul(abs(sub(b.lon.clone(), a.lon.clone())), coslat)),
    )
}

/// `geo::near`: the box test, then the distance.
fn near(q: &At, airport: Point) -> Cond {
    Cond::All(vec![
        le(abs(sub(q.lat.clone(), num(airport.lat))), num(AIRPORT_BOX_DEG.0)),
        le(abs(sub(q.lon.clone(), num(airport.lon))), num(AIRPORT_BOX_DEG.1)),
        lt(haversine(q, &At::fixed(airport)), num(AIRPORT_RADIUS_KM)),
    ])
}

/// Lets for `geo::in_manhattan` of a point, ending with `{end}_manhattan` (0 or 1).
fn in_manhattan(end: &str, q: &At, lets: &mut Vec<(String, Expr)>) {
    let m = ManhattanBand::new();
    let a = MANHATTAN_SPINE.0;
    let (px, py, t) = (format!("{end}_px"), format!("{end}_py"), format!("{end}_t"));
    lets.push((px.clone(), mul(sub(q.lon.clone(), num(a.lon)), num(m.coslat))));
    lets.push((py.clone(), sub(q.lat.clone(), num(a.lat))));
    lets.push((t.clone(), clamp(div(add(mul(var(&px), num(m.bx)), mul(var(&py), num(m.by))), num(m.bb)), 0.0, 1.0)));
    let dx = sub(var(&px), mul(var(&t), num(m.bx)));
    let dy = sub(var(&py), mul(var(&t), num(m.by)));
    let dist = mul(call(Func::Sqrt, add(square(dx), square(dy))), num(m.km_per_deg));
    lets.push((format!("{end}_manhattan"), indicator(lt(dist, num(MANHATTAN_HALF_WIDTH_KM)))));
}

/// The index of the first holding condition, −1 when none does.
pub(super) fn first_of(conds: Vec<Cond>) -> Expr {
    Expr::Case(conds.into_iter().enumerate().map(|(k, c)| (c, num(k as f64))).collect(), Box::new(num(-1.0)))
}

/// The geohash-5 cell of a point among [`GEOHASHES`], as exact boxes.
fn cell_index(q: &At) -> Expr {
    first_of(
        GEOHASHES
            .iter()
            .map(|g| {
                let ((lat_lo, lat_hi), (lon_lo, lon_hi)) = geo::geohash5_box(geo::geohash5_code(g).unwrap_or(u32::MAX));
                let mut c = Vec::new();
                for (v, lo, hi) in [(&q.lat, lat_lo, lat_hi), (&q.lon, lon_lo, lon_hi)] {
                    c.extend(lo.map(|lo| ge(v.clone(), num(lo))));
                    c.extend(hi.map(|hi| lt(v.clone(), num(hi))));
                }
                Cond::All(c)
            })
            .collect(),
    )
}

pub(super) fn is(name: &str) -> Cond {
    nonzero(var(name))
}

/// The named values v1 uses (v2 adds to them).
pub(super) fn lets() -> Vec<(String, Expr)> {
    let (p, d) = (At::pickup(), At::dropoff());
    let sod = input(Input::LocalSecondOfDay);
    let mut v: Vec<(String, Expr)> = vec![
        ("dist".into(), haversine(&p, &d)),
        ("hour".into(), floor(div(sod.clone(), num(3600.0)))),
        ("angle".into(), mul(div(div(sod, num(3600.0)), num(24.0)), num(std::f64::consts::TAU))),
        ("post".into(), indicator(ge(input(Input::Seconds), num(RATE_CHANGE as f64)))),
    ];
    let hour = |h: i64| num(h as f64);
    v.push(("night".into(), indicator(Cond::Any(vec![lt(var("hour"), hour(NIGHT_UNTIL_HOUR)), ge(var("hour"), hour(NIGHT_FROM_HOUR))]))));
    v.push((
        "peak".into(),
        indicator(Cond::All(vec![
            lt(input(Input::LocalWeekday), num(f64::from(SATURDAY))),
            ge(var("hour"), hour(PEAK_FROM_HOUR)),
            lt(var("hour"), hour(PEAK_UNTIL_HOUR)),
        ])),
    ));
    for (end, q) in [("pickup", &p), ("dropoff", &d)] {
        for (name, airport) in ["jfk", "lga", "ewr"].iter().zip(AIRPORTS) {
            v.push((format!("{end}_{name}"), indicator(near(q, airport))));
        }
        in_manhattan(end, q, &mut v);
    }
    v.push((
        "jfk_manhattan".into(),
        indicator(Cond::Any(vec![
            Cond::All(vec![is("pickup_jfk"), is("dropoff_manhattan")]),
            Cond::All(vec![is("dropoff_jfk"), is("pickup_manhattan")]),
        ])),
    ));
    v.push(("ewr".into(), indicator(Cond::Any(vec![is("pickup_ewr"), is("dropoff_ewr")]))));
    v
}

fn names(group: &[&str], prefix: &str) -> Vec<String> {
    group.iter().map(|g| format!("{prefix}{g}")).collect()
}

/// The v1 columns; `year` is the one v2 restates.
pub(super) fn slots(year: Slot) -> Vec<Slot> {
    let (p, d) = (At::pickup(), At::dropoff());
    let column = |name: &str, value: Expr| Slot::Column { name: name.into(), value };
    let (wd, month) = (input(Input::LocalWeekday), input(Input::LocalMonth));
    let mut s = vec![
        column("passengers", div(input(Input::Passengers), num(PASSENGER_SCALE))),
        column("hour_sin", sin(var("angle"))),
        column("hour_cos", cos(var("angle"))),
        Slot::OneHot {
            names: names(&["tue", "wed", "thu", "fri", "sat", "sun"], "weekday_"),
            index: when(ge(wd.clone(), num(1.0)), sub(wd, num(1.0)), num(-1.0)),
            value: num(1.0),
        },
        Slot::OneHot {
            names: names(&["feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], "month_"),
            index: when(ge(month.clone(), num(2.0)), sub(month, num(2.0)), num(-1.0)),
            value: num(1.0),
        },
        year,
        column("haversine_km", var("dist")),
        column("manhattan_km", manhattan(&p, &d)),
    ];
    for (end, q) in [("pickup_", &p), ("dropoff_", &d)] {
        s.push(Slot::OneHot { names: names(&GEOHASHES, end), index: cell_index(q), value: num(1.0) });
    }
    for end in ["pickup", "dropoff"] {
        for a in ["jfk", "lga", "ewr"] {
            let name = format!("{end}_{a}");
            s.push(column(&name, var(&name)));
        }
    }
    let ts = || input(Input::Seconds);
    s.extend([
        column("night", var("night")),
        column("peak", var("peak")),
        column("post_2012_09", var("post")),
        column("dist_x_post_2012_09", mul(var("dist"), var("post"))),
        column("mta_era", indicator(ge(ts(), num(MTA_TAX_START as f64)))),
        column("jfk_manhattan", var("jfk_manhattan")),
        column("jfk_manhattan_x_post", mul(var("jfk_manhattan"), var("post"))),
        column("jfk_manhattan_x_dist", mul(var("jfk_manhattan"), var("dist"))),
        column("ewr_x_post", mul(var("ewr"), var("post"))),
        column("dist_x_peak", mul(var("dist"), var("peak"))),
        column("dist_x_night", mul(var("dist"), var("night"))),
    ]);
    debug_assert_eq!(s.iter().map(Slot::width).sum::<usize>(), features::N_FEATURES);
    s
}

/// Version 1.
pub(super) fn spec() -> Spec {
    let year = Slot::Column { name: "year".into(), value: div(input(Input::MonthIndex), num(YEAR_SCALE_MONTHS)) };
    Spec { set: FeatureSet::V1, lets: lets(), slots: slots(year) }
}
