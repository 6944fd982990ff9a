//! The model's byte format: little-endian, versioned, checksummed.
//!
//! ```text
//! magic "TXFM" | format u16 | feature_version u16 | p u32 | ridge_alpha f64 | half_life f64
//! | last_month i32 (i32::MIN = none) | syy f64 | xtx (p+1)² f64 | xty (p+1) f64
//! | [format 2 only: has_cells u8 | the correction's statistics (`CellStats::write`)]
//! | has_coef u8 [intercept f64 | beta p f64 | format 2 only: correction N_CELLS f64]
//! | fnv1a-64 of everything before u64
//! ```
//!
//! Format 2 is written for the feature versions with a median correction (3); the others are
//! still written in format 1, byte for byte as before, and both formats load.

use ndarray::{Array1, Array2};

use super::feature_set::FeatureSet;
use super::features_v3::{CellStats, N_CELLS};
use super::model::{Model, Settings};
use super::stats::{Coefficients, Stats};
use super::KernelError;
use crate::fnv::fnv1a;

const MAGIC: &[u8; 4] = b"TXFM";
/// Version of the byte format written for a feature version with a median correction.
pub const FORMAT_VERSION: u16 = 2;
/// The format written for the versions without a correction (and read as before).
const FORMAT_PLAIN: u16 = 1;

/// Serialises a model.
#[must_use]
pub fn to_bytes(m: &Model) -> Vec<u8> {
    let p = m.stats.p();
    let mut out = Vec::with_capacity(64 + 8 * (p + 1) * (p + 3));
    out.extend_from_slice(MAGIC);
    let cells = m.feature_set.has_correction();
    out.extend_from_slice(&(if cells { FORMAT_VERSION } else { FORMAT_PLAIN }).to_le_bytes());
    out.extend_from_slice(&m.feature_version().to_le_bytes());
    out.extend_from_slice(&(p as u32).to_le_bytes());
    out.extend_from_slice(&m.settings.ridge_alpha.to_le_bytes());
    out.extend_from_slice(&m.settings.half_life_months.to_le_bytes());
    out.extend_from_slice(&m.last_month.unwrap_or(i32::MIN).to_le_bytes());
    out.extend_from_slice(&m.stats.syy.to_le_bytes());
    for v in m.stats.xtx.iter().chain(m.stats.xty.iter()) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    if cells {
        match &m.stats.cells {
            Some(c) => {
                out.push(1);
                c.write(&mut out);
            }
            None => out.push(0),
        }
    }
    match &m.coef {
        Some(c) => {
            out.push(1);
            for v in std::iter::once(&c.intercept).chain(&c.beta) {
                out.extend_from_slice(&v.to_le_bytes());
            }
            if cells {
                for k in 0..N_CELLS {
                    out.extend_from_slice(&c.correction_at(k).to_le_bytes());
                }
            }
        }
        None => out.push(0),
    }
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

struct Cursor<'a>(&'a [u8]);
impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], KernelError> {
        if self.0.len() < N {
            return Err(KernelError::Format("truncated".into()));
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().map_err(|_| KernelError::Format("truncated".into()))
    }
    fn f64(&mut self) -> Result<f64, KernelError> {
        Ok(f64::from_le_bytes(self.take()?))
    }
}

/// Loads a model, refusing unknown versions and corrupt bytes.
pub fn from_bytes(bytes: &[u8]) -> Result<Model, KernelError> {
    if bytes.len() < 4 + 8 || &bytes[..4] != MAGIC {
        return Err(KernelError::Format("not a taxifare model (bad magic)".into()));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let mut c = Cursor(&body[4..]);
    let format = u16::from_le_bytes(c.take()?);
    if format != FORMAT_VERSION && format != FORMAT_PLAIN {
        return Err(KernelError::Format(format!("unknown format version {format} (this build reads {FORMAT_PLAIN} and {FORMAT_VERSION})")));
    }
    if sum.try_into().map(u64::from_le_bytes).ok() != Some(fnv1a(body)) {
        return Err(KernelError::Format("checksum mismatch: the bytes are corrupt".into()));
    }
    let feature_set = FeatureSet::from_version(u16::from_le_bytes(c.take()?)).map_err(|e| KernelError::Format(e.to_string()))?;
    let p = u32::from_le_bytes(c.take()?) as usize;
    if p != feature_set.p() {
        return Err(KernelError::Format(format!("{p} features, feature version {} has {}", feature_set.version(), feature_set.p())));
    }
    let settings = Settings { ridge_alpha: c.f64()?, half_life_months: c.f64()? };
    settings.validate().map_err(|e| KernelError::Format(e.to_string()))?;
    let last = i32::from_le_bytes(c.take()?);
    let syy = c.f64()?;
    let xtx = (0..(p + 1) * (p + 1)).map(|_| c.f64()).collect::<Result<Vec<_>, _>>()?;
    let xty = (0..p + 1).map(|_| c.f64()).collect::<Result<Vec<_>, _>>()?;
    let with_cells = format == FORMAT_VERSION;
    if with_cells != feature_set.has_correction() {
        return Err(KernelError::Format(format!("format {format} cannot hold feature version {}", feature_set.version())));
    }
    let mut cells = None;
    if with_cells && c.take::<1>()?[0] != 0 {
        let (block, used) = CellStats::read(c.0, p).map_err(KernelError::Format)?;
        c.0 = &c.0[used..];
        cells = Some(block);
    }
    let coef = match c.take::<1>()?[0] {
        0 => None,
        _ => {
            let intercept = c.f64()?;
            let beta = (0..p).map(|_| c.f64()).collect::<Result<_, _>>()?;
            let correction = if with_cells { (0..N_CELLS).map(|_| c.f64()).collect::<Result<_, _>>()? } else { Vec::new() };
            Some(Coefficients { intercept, beta, correction })
        }
    };
    if !c.0.is_empty() {
        return Err(KernelError::Format("trailing bytes".into()));
    }
    let xtx = Array2::from_shape_vec((p + 1, p + 1), xtx).map_err(|e| KernelError::Format(e.to_string()))?;
    Ok(Model {
        settings,
        feature_set,
        stats: Stats { xtx, xty: Array1::from(xty), syy, cells },
        last_month: (last != i32::MIN).then_some(last),
        coef,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Month;
    use crate::generator::MonthRides;

    #[test]
    fn round_trip_and_corruption() {
        let mut m = Model::new(Settings { ridge_alpha: 0.1, half_life_months: 6.0 }).unwrap();
        m.partial_fit(MonthRides::new(1, Month::parse("2013-05").unwrap(), 2000, 500, false)).unwrap();
        let unsolved = to_bytes(&m);
        assert_eq!(from_bytes(&unsolved).unwrap(), m);
        m.coefficients().unwrap();
        let bytes = to_bytes(&m);
        assert_eq!(from_bytes(&bytes).unwrap(), m);
        let mut bad = bytes.clone();
        bad[100] ^= 1;
        assert!(from_bytes(&bad).unwrap_err().to_string().contains("corrupt"));
        assert!(from_bytes(&bytes[..bytes.len() - 3]).is_err());
        let mut future = bytes.clone();
        future[4] = 9;
        assert!(from_bytes(&future).unwrap_err().to_string().contains("unknown format version 9"));
        assert!(from_bytes(b"hello world!").unwrap_err().to_string().contains("magic"));
    }

    /// Bytes written by the build before feature versions were dispatched (main at 40e7905,
    /// `tests/data/model_v1_main.bin`: 2011-05, 3000 rows, seed 7, half-life 6 months) load as
    /// a v1 model and are written back byte for byte.
    #[test]
    fn bytes_of_the_v1_only_build_still_load() {
        let old: &[u8] = include_bytes!("../../tests/data/model_v1_main.bin");
        let m = from_bytes(old).unwrap();
        assert_eq!(m.feature_set, FeatureSet::V1);
        assert_eq!(m.stats.p(), 80);
        assert_eq!(m.settings, Settings { ridge_alpha: 1e-3, half_life_months: 6.0 });
        assert_eq!(m.last_month, Some(Month::parse("2011-05").unwrap().index()));
        assert_eq!(to_bytes(&m), old);
        let mut unknown = old.to_vec();
        unknown[6] = 7;
        let n = unknown.len() - 8;
        let sum = fnv1a(&unknown[..n]).to_le_bytes();
        unknown[n..].copy_from_slice(&sum);
        assert!(from_bytes(&unknown).unwrap_err().to_string().contains("feature version 7"));
    }
}
