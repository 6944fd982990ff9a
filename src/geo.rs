//! New York geography shared by the generator and the features: distances, the airports,
//! Manhattan, and geohash cells.

/// Mean Earth radius in km.
const EARTH_KM: f64 = 6371.0088;

/// A point in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Latitude, degrees north.
    pub lat: f64,
    /// Longitude, degrees east.
    pub lon: f64,
}

/// JFK airport terminal area.
pub const JFK: Point = Point { lat: 40.6413, lon: -73.7781 };
/// LaGuardia airport.
pub const LGA: Point = Point { lat: 40.7769, lon: -73.8740 };
/// Newark Liberty airport.
pub const EWR: Point = Point { lat: 40.6895, lon: -74.1745 };
/// The airports, in the order features and rules refer to them.
pub const AIRPORTS: [Point; 3] = [JFK, LGA, EWR];
/// Within this many km of an airport a ride counts as an airport ride.
pub const AIRPORT_RADIUS_KM: f64 = 2.0;

/// Half-sizes `(lat, lon)` in degrees of the box around an airport that [`near`] tests before
/// the distance: 2 km is under 0.02° of latitude and 0.03° of longitude here.
pub const AIRPORT_BOX_DEG: (f64, f64) = (0.02, 0.03);

/// The NYC box outside of which rides are dropped by cleaning.
pub const NYC_LAT: (f64, f64) = (40.5, 40.9);
/// Longitude bounds of the NYC box.
pub const NYC_LON: (f64, f64) = (-74.3, -73.7);

/// Great-circle distance in km.
#[must_use]
pub fn haversine_km(a: Point, b: Point) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_KM * h.sqrt().asin()
}

/// L1 distance in km, with the longitude difference scaled by cos(mean latitude) so that a
/// degree east counts its true length.
#[must_use]
pub fn manhattan_km(a: Point, b: Point) -> f64 {
    let km_per_deg = EARTH_KM.to_radians();
    let coslat = ((a.lat + b.lat) / 2.0).to_radians().cos();
    km_per_deg * ((b.lat - a.lat).abs() + (b.lon - a.lon).abs() * coslat)
}

/// Whether a point lies within [`AIRPORT_RADIUS_KM`] of an airport.
#[must_use]
pub fn near(p: Point, airport: Point) -> bool {
    // Most rides stop at the box test.
    if (p.lat - airport.lat).abs() > AIRPORT_BOX_DEG.0 || (p.lon - airport.lon).abs() > AIRPORT_BOX_DEG.1 {
        return false;
    }
    haversine_km(p, airport) < AIRPORT_RADIUS_KM
}

/// Manhattan as the band within 1.5 km of its spine from the Battery to Inwood: close enough
/// for the JFK flat-fare rule, which only asks "Manhattan or not".
#[must_use]
pub fn in_manhattan(p: Point) -> bool {
    let m = ManhattanBand::new();
    let (px, py) = ((p.lon - MANHATTAN_SPINE.0.lon) * m.coslat, p.lat - MANHATTAN_SPINE.0.lat);
    let t = ((px * m.bx + py * m.by) / m.bb).clamp(0.0, 1.0);
    let (dx, dy) = (px - t * m.bx, py - t * m.by);
    (dx * dx + dy * dy).sqrt() * m.km_per_deg < MANHATTAN_HALF_WIDTH_KM
}

/// The spine of Manhattan, the Battery to Inwood.
pub const MANHATTAN_SPINE: (Point, Point) = (Point { lat: 40.703, lon: -74.014 }, Point { lat: 40.872, lon: -73.918 });
/// Half the width of the Manhattan band, km.
pub const MANHATTAN_HALF_WIDTH_KM: f64 = 1.5;

/// The derived constants of [`in_manhattan`], computed once here so that the feature spec
/// states the same numbers.
#[derive(Clone, Copy, Debug)]
pub struct ManhattanBand {
    /// cos of the band's mean latitude (longitude degrees to latitude degrees).
    pub coslat: f64,
    /// The spine's vector, in latitude degrees.
    pub bx: f64,
    /// Its latitude part.
    pub by: f64,
    /// Its squared length.
    pub bb: f64,
    /// Km per degree of latitude.
    pub km_per_deg: f64,
}

impl ManhattanBand {
    /// The constants.
    #[must_use]
    pub fn new() -> Self {
        let (a, b) = MANHATTAN_SPINE;
        let coslat = 40.79_f64.to_radians().cos();
        let (bx, by) = ((b.lon - a.lon) * coslat, b.lat - a.lat);
        Self { coslat, bx, by, bb: bx * bx + by * by, km_per_deg: EARTH_KM.to_radians() }
    }
}

impl Default for ManhattanBand {
    fn default() -> Self {
        Self::new()
    }
}

/// Mean Earth radius in km, as the distances use it.
pub const EARTH_RADIUS_KM: f64 = EARTH_KM;

/// Whether a point lies inside the NYC box.
#[must_use]
pub fn in_nyc(p: Point) -> bool {
    (NYC_LAT.0..=NYC_LAT.1).contains(&p.lat) && (NYC_LON.0..=NYC_LON.1).contains(&p.lon)
}

const BASE32: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// Index of the cell of `v` among `cells` equal cells of `[lo, lo + cells·45/1024)`, exactly
/// as bisecting the range (`v >= mid` goes up) finds it: below the range (and NaN) is cell 0,
/// above it the last cell.
///
/// Every bisection midpoint is `(45·j + 1024·lo)/1024` for an integer `j`, exactly
/// representable, so a floating estimate of `j` is corrected by comparing `v` with the two
/// exact bounds around it; the rounding of the estimate can be off by one cell at most.
fn cell_index(v: f64, lo: i64, cells: i64) -> u32 {
    let bound = |j: i64| (45 * j + 1024 * lo) as f64 / 1024.0;
    // `as` saturates and sends NaN to 0, which is where bisection sends it too.
    let mut j = (((v - lo as f64) * (1024.0 / 45.0)).floor() as i64).clamp(0, cells - 1);
    if j > 0 && v < bound(j) {
        j -= 1;
    } else if j + 1 < cells && v >= bound(j + 1) {
        j += 1;
    }
    j as u32
}

/// Spreads the low 16 bits of `x` to the even bit positions.
fn spread(x: u32) -> u32 {
    let mut x = x & 0xffff;
    x = (x | (x << 8)) & 0x00ff_00ff;
    x = (x | (x << 4)) & 0x0f0f_0f0f;
    x = (x | (x << 2)) & 0x3333_3333;
    (x | (x << 1)) & 0x5555_5555
}

/// The 25-bit integer code of the 5-character geohash cell holding a point: 13 longitude bits
/// interleaved with 12 latitude bits, longitude first. Computed without the 25 data-dependent
/// branches of bisection (their mispredictions dominated the features' cost).
#[must_use]
pub fn geohash5(p: Point) -> u32 {
    // 360°/2^13 = 180°/2^12 = 45/1024°: both axes have cells of the same size.
    let lon = cell_index(p.lon, -180, 1 << 13);
    let lat = cell_index(p.lat, -90, 1 << 12);
    spread(lon) | (spread(lat) << 1)
}

/// The integer code of a 5-character geohash string; `None` if it is not one.
#[must_use]
pub fn geohash5_code(s: &str) -> Option<u32> {
    if s.len() != 5 {
        return None;
    }
    s.bytes().try_fold(0u32, |acc, c| BASE32.iter().position(|&b| b == c).map(|i| (acc << 5) | i as u32))
}

/// The box of a geohash-5 cell: `(lat, lon)` half-open ranges `[lo, hi)`, where a bound is
/// `None` at the edge of the world (cells there extend to infinity, as [`geohash5`] clamps).
#[must_use]
pub fn geohash5_box(code: u32) -> ((Option<f64>, Option<f64>), (Option<f64>, Option<f64>)) {
    let compact = |x: u32| (0..16).fold(0u32, |acc, k| acc | (((x >> (2 * k)) & 1) << k));
    let (lon, lat) = (i64::from(compact(code)), i64::from(compact(code >> 1)));
    let range = |j: i64, lo: i64, cells: i64| {
        let bound = |j: i64| (45 * j + 1024 * lo) as f64 / 1024.0;
        ((j > 0).then(|| bound(j)), (j + 1 < cells).then(|| bound(j + 1)))
    };
    (range(lat, -90, 1 << 12), range(lon, -180, 1 << 13))
}

/// The textbook bisection, the reference for [`geohash5`].
#[cfg(test)]
pub(crate) fn geohash5_bisect(p: Point) -> u32 {
    let (mut lat, mut lon) = ((-90.0_f64, 90.0_f64), (-180.0_f64, 180.0_f64));
    let mut code = 0u32;
    for bit in 0..25 {
        let range = if bit % 2 == 0 { &mut lon } else { &mut lat };
        let v = if bit % 2 == 0 { p.lon } else { p.lat };
        let mid = (range.0 + range.1) / 2.0;
        code <<= 1;
        if v >= mid {
            code |= 1;
            range.0 = mid;
        } else {
            range.1 = mid;
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        let d = haversine_km(JFK, LGA);
        assert!((d - 17.0).abs() < 0.5, "{d}");
        let times_square = Point { lat: 40.758, lon: -73.9855 };
        assert!(manhattan_km(times_square, JFK) > haversine_km(times_square, JFK));
        assert!(in_manhattan(times_square));
        assert!(!in_manhattan(JFK) && !in_manhattan(Point { lat: 40.6782, lon: -73.9442 }));
        assert!(near(Point { lat: 40.645, lon: -73.78 }, JFK));
    }

    #[test]
    fn geohash_equals_bisection_on_cell_bounds_and_everywhere() {
        let mut rng = crate::generator::rng::Rng::new(3, 0);
        let check = |p: Point| assert_eq!(geohash5(p), geohash5_bisect(p), "{p:?}");
        // Every cell bound of the NYC region and the floats either side of it.
        for j in -20..=20 {
            for (lat0, lon0) in [(40.5, -74.3), (40.9, -73.7), (0.0, 0.0), (-90.0, -180.0), (90.0, 180.0)] {
                let (lat_b, lon_b) = ((lat0 * 1024.0 / 45.0_f64).floor() + f64::from(j), (lon0 * 1024.0 / 45.0_f64).floor() + f64::from(j));
                for lat in [lat_b * 45.0 / 1024.0, lat0] {
                    for lon in [lon_b * 45.0 / 1024.0, lon0] {
                        for (dl, dn) in [(0.0, 0.0), (1.0, 1.0), (-1.0, -1.0), (1.0, -1.0)] {
                            let step = |v: f64, d: f64| if d > 0.0 { v.next_up() } else if d < 0.0 { v.next_down() } else { v };
                            check(Point { lat: step(lat, dl), lon: step(lon, dn) });
                        }
                    }
                }
            }
        }
        for _ in 0..200_000 {
            check(Point { lat: 40.5 + 0.4 * rng.uniform(), lon: -74.3 + 0.6 * rng.uniform() });
            check(Point { lat: 200.0 * rng.uniform() - 100.0, lon: 400.0 * rng.uniform() - 200.0 });
        }
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.0, 1e300, -1e300] {
            check(Point { lat: v, lon: 10.0 });
            check(Point { lat: 10.0, lon: v });
        }
    }

    #[test]
    fn geohash_of_times_square() {
        // Times Square is in cell dr5ru.
        assert_eq!(geohash5(Point { lat: 40.758, lon: -73.9855 }), geohash5_code("dr5ru").unwrap());
        assert_eq!(geohash5_code("dr5r"), None);
    }
}
