//! Regression metrics accumulated in one pass.

/// Running sums for MAE, RMSE and R².
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Rows scored.
    pub n: u64,
    sum_abs: f64,
    sum_sq: f64,
    sum_y: f64,
    sum_yy: f64,
}

impl Metrics {
    /// Adds one prediction.
    pub fn add(&mut self, y: f64, pred: f64) {
        let e = pred - y;
        self.n += 1;
        self.sum_abs += e.abs();
        self.sum_sq += e * e;
        self.sum_y += y;
        self.sum_yy += y * y;
    }

    /// The metrics of rows whose sums were computed elsewhere (in a warehouse): `n`, Σ|e|,
    /// Σe², Σy, Σy².
    #[must_use]
    pub fn from_sums(n: u64, sum_abs: f64, sum_sq: f64, sum_y: f64, sum_yy: f64) -> Self {
        Self { n, sum_abs, sum_sq, sum_y, sum_yy }
    }

    /// Σ|e|.
    #[must_use]
    pub fn sum_abs(&self) -> f64 {
        self.sum_abs
    }

    /// Adds the sums of other rows.
    pub fn merge(&mut self, other: &Self) {
        self.n += other.n;
        self.sum_abs += other.sum_abs;
        self.sum_sq += other.sum_sq;
        self.sum_y += other.sum_y;
        self.sum_yy += other.sum_yy;
    }

    /// Mean absolute error (NaN when empty).
    #[must_use]
    pub fn mae(&self) -> f64 {
        self.sum_abs / self.n as f64
    }

    /// Root mean squared error (NaN when empty).
    #[must_use]
    pub fn rmse(&self) -> f64 {
        (self.sum_sq / self.n as f64).sqrt()
    }

    /// Coefficient of determination (NaN when empty or constant).
    #[must_use]
    pub fn r2(&self) -> f64 {
        let n = self.n as f64;
        let sst = self.sum_yy - self.sum_y * self.sum_y / n;
        1.0 - self.sum_sq / sst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        let mut m = Metrics::default();
        for (y, p) in [(1.0, 2.0), (3.0, 3.0), (5.0, 2.0)] {
            m.add(y, p);
        }
        assert!((m.mae() - 4.0 / 3.0).abs() < 1e-12);
        assert!((m.rmse() - (10.0_f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((m.r2() - (1.0 - 10.0 / 8.0)).abs() < 1e-12);
        assert!(Metrics::default().mae().is_nan());
    }
}
