//! The synthetic ride history: deterministic per seed, streamed a batch at a time, with the
//! dirt of the real Kaggle file at documented rates (see [`dirt`]).

pub mod dirt;
pub mod history;
pub mod import;
pub mod rng;
pub mod scenario;
pub mod trips;

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

use crate::calendar::{self, Month, NyClock};
use crate::schema;
use rng::Rng;
use scenario::Scenario;

/// Rows of the Kaggle `train.csv` (2009-01 … 2015-06).
pub const KAGGLE_ROWS: u64 = 55_423_856;
/// First month of the Kaggle span.
pub const FIRST_MONTH: Month = Month { year: 2009, month: 1 };
/// Last month of the Kaggle span.
pub const LAST_MONTH: Month = Month { year: 2015, month: 6 };

/// Rows of a month when the whole history has `total` rows spread over `months` months.
#[must_use]
pub fn rows_for_month(total: u64, months: u64, i: u64) -> u64 {
    total / months + u64::from(i < total % months)
}

/// Statistics of a generated month, for the noise-floor sidecar.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MonthSummary {
    /// Rows written (dirty ones included).
    pub rows: u64,
    /// Rows that are not dirty.
    pub clean_rows: u64,
    /// Σ|fare − expected| over clean rows.
    pub abs_noise: f64,
    /// Σ(fare − expected)² over clean rows.
    pub sq_noise: f64,
}

impl MonthSummary {
    /// Mean absolute error of the expected fare: the best MAE a model could reach.
    #[must_use]
    pub fn noise_floor_mae(&self) -> f64 {
        self.abs_noise / self.clean_rows.max(1) as f64
    }
    /// Root mean squared error of the expected fare.
    #[must_use]
    pub fn noise_floor_rmse(&self) -> f64 {
        (self.sq_noise / self.clean_rows.max(1) as f64).sqrt()
    }
}

/// Streams the rides of one month in pickup-time order, as Arrow batches.
pub struct MonthRides {
    rng: Rng,
    clock: NyClock,
    month: Month,
    /// Rides still to draw per UTC hour of the month, consumed from the front.
    hours: std::vec::IntoIter<(i64, u64)>,
    seconds: Vec<u32>,
    pending_hour: Option<(i64, std::vec::IntoIter<u32>)>,
    seq: u64,
    batch_rows: usize,
    with_expected: bool,
    scenario: Scenario,
    schema: SchemaRef,
    last: Option<dirt::Row>,
    /// What has been generated so far.
    pub summary: MonthSummary,
}

impl MonthRides {
    /// `rows` rides of `month` from `seed`, `batch_rows` a batch.
    #[must_use]
    pub fn new(seed: u64, month: Month, rows: u64, batch_rows: usize, with_expected: bool) -> Self {
        let mut clock = NyClock::default();
        let start = month.start();
        let n_hours = i64::from(calendar::days_in_month(month.year, month.month)) * 24;
        let weights: Vec<f64> = (0..n_hours)
            .map(|h| {
                let local = clock.local(start + h * 3600);
                trips::volume_weight(local.weekday, local.second_of_day / 3600)
            })
            .collect();
        let total: f64 = weights.iter().sum();
        // Largest-remainder apportionment: exactly `rows` rides, in proportion to the weights.
        let exact: Vec<f64> = weights.iter().map(|w| w / total * rows as f64).collect();
        let mut counts: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
        let short = rows - counts.iter().sum::<u64>();
        let mut order: Vec<usize> = (0..exact.len()).collect();
        order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
        for &i in order.iter().take(short as usize) {
            counts[i] += 1;
        }
        let hours: Vec<(i64, u64)> = counts.into_iter().enumerate().map(|(h, c)| (start + h as i64 * 3600, c)).collect();
        let schema = if with_expected { schema::ride_schema_with_expected() } else { schema::ride_schema() };
        Self {
            rng: Rng::new(seed, month.index() as u64),
            clock,
            month,
            hours: hours.into_iter(),
            seconds: Vec::new(),
            pending_hour: None,
            seq: 0,
            batch_rows: batch_rows.max(1),
            with_expected,
            scenario: Scenario::Plain,
            schema,
            last: None,
            summary: MonthSummary::default(),
        }
    }

    /// The same rides with the fares of `scenario` (it draws no random number: only the fares
    /// differ from the plain history's).
    #[must_use]
    pub fn with_scenario(mut self, scenario: Scenario) -> Self {
        self.scenario = scenario;
        self
    }

    /// The schema of the batches.
    #[must_use]
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_ts(&mut self) -> Option<i64> {
        loop {
            if let Some((hour, secs)) = &mut self.pending_hour {
                if let Some(s) = secs.next() {
                    return Some(*hour + i64::from(s));
                }
            }
            let (hour, count) = self.hours.next()?;
            self.seconds.clear();
            for _ in 0..count {
                self.seconds.push(self.rng.below(3600) as u32);
            }
            self.seconds.sort_unstable();
            self.pending_hour = Some((hour, std::mem::take(&mut self.seconds).into_iter()));
        }
    }

    fn build(&mut self) -> Option<Result<RecordBatch, ArrowError>> {
        let cap = self.batch_rows;
        let mut key = StringBuilder::with_capacity(cap, cap * 27);
        let mut dt = StringBuilder::with_capacity(cap, cap * 23);
        let mut fare = Float64Builder::with_capacity(cap);
        let mut cols: [Float64Builder; 4] = std::array::from_fn(|_| Float64Builder::with_capacity(cap));
        let mut pc = Int64Builder::with_capacity(cap);
        let mut expected = Float64Builder::with_capacity(cap);
        let mut text = String::with_capacity(32);
        let mut n = 0;
        while n < cap {
            let Some(ts) = self.next_ts() else { break };
            let row = match self.last {
                Some(prev) if self.rng.chance(dirt::DUPLICATE) => prev,
                _ => {
                    let ride = self.scenario.apply(trips::ride(&mut self.rng, &mut self.clock, ts));
                    let row = dirt::soil(&mut self.rng, ride, self.seq);
                    self.seq += 1;
                    if row.clean {
                        self.summary.clean_rows += 1;
                        let e = row.fare.unwrap_or(0.0) - ride.expected_fare;
                        self.summary.abs_noise += e.abs();
                        self.summary.sq_noise += e * e;
                    }
                    row
                }
            };
            self.last = Some(row);
            self.summary.rows += 1;
            text.clear();
            calendar::format_datetime(row.ts, &mut text);
            dt.append_value(&text);
            text.truncate(19);
            text.push_str(&format!(".{:07}", row.seq % 10_000_000));
            key.append_value(&text);
            fare.append_option(row.fare);
            for (b, v) in cols.iter_mut().zip(row.coords) {
                b.append_option(v);
            }
            pc.append_value(row.passengers);
            expected.append_value(row.expected_fare);
            n += 1;
        }
        if n == 0 {
            return None;
        }
        let [plon, plat, dlon, dlat] = cols;
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(key.finish()),
            Arc::new(fare.finish()),
            Arc::new(dt.finish()),
            Arc::new({ plon }.finish()),
            Arc::new({ plat }.finish()),
            Arc::new({ dlon }.finish()),
            Arc::new({ dlat }.finish()),
            Arc::new(pc.finish()),
        ];
        if self.with_expected {
            arrays.push(Arc::new(expected.finish()));
        }
        Some(RecordBatch::try_new(self.schema.clone(), arrays))
    }

    /// The month being generated.
    #[must_use]
    pub fn month(&self) -> Month {
        self.month
    }
}

impl Iterator for MonthRides {
    type Item = Result<RecordBatch, ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.build()
    }
}

impl arrow::record_batch::RecordBatchReader for MonthRides {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
