//! Typed views of the raw ride columns of a batch, whatever the integer/float/string flavours
//! the producer used (Parquet, CSV, pandas, BigQuery all differ).

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, TimeUnit};

use super::KernelError;
use crate::calendar;
use crate::schema;

/// Marks a pickup time that is missing or does not parse.
pub const NO_TIME: i64 = i64::MIN;

/// The raw ride columns of one batch.
pub struct RideColumns {
    /// Rows in the batch.
    pub len: usize,
    /// Pickup instants (Unix seconds UTC), [`NO_TIME`] where missing or unparseable.
    pub ts: Vec<i64>,
    /// Pickup longitude.
    pub plon: Float64Array,
    /// Pickup latitude.
    pub plat: Float64Array,
    /// Dropoff longitude.
    pub dlon: Float64Array,
    /// Dropoff latitude.
    pub dlat: Float64Array,
    /// Passengers.
    pub passengers: Int64Array,
    /// Fares, when present.
    pub fare: Option<Float64Array>,
    /// Ride keys, when present.
    pub key: Option<StringArray>,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, KernelError> {
    batch.column_by_name(name).ok_or_else(|| KernelError::Schema { column: name.into(), reason: "missing".into() })
}

fn numeric(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef, KernelError> {
    let c = column(batch, name)?;
    let ok = c.data_type().is_numeric() || matches!(c.data_type(), DataType::Null);
    if !ok {
        return Err(KernelError::Schema { column: name.into(), reason: format!("is {}, expected a number", c.data_type()) });
    }
    arrow::compute::cast(c, to).map_err(|e| KernelError::Schema { column: name.into(), reason: e.to_string() })
}

fn floats(batch: &RecordBatch, name: &str) -> Result<Float64Array, KernelError> {
    Ok(numeric(batch, name, &DataType::Float64)?.as_primitive().clone())
}

fn strings(c: &ArrayRef, name: &str) -> Result<StringArray, KernelError> {
    match c.data_type() {
        DataType::Utf8 => Ok(c.as_string::<i32>().clone()),
        DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            let c = arrow::compute::cast(c, &DataType::Utf8).map_err(|e| KernelError::Schema { column: name.into(), reason: e.to_string() })?;
            Ok(c.as_string::<i32>().clone())
        }
        other => Err(KernelError::Schema { column: name.into(), reason: format!("is {other}, expected a string") }),
    }
}

fn times(c: &ArrayRef) -> Result<Vec<i64>, KernelError> {
    let name = schema::PICKUP_DATETIME;
    if let DataType::Timestamp(unit, _) = c.data_type() {
        let per_second = match unit {
            TimeUnit::Second => 1,
            TimeUnit::Millisecond => 1_000,
            TimeUnit::Microsecond => 1_000_000,
            TimeUnit::Nanosecond => 1_000_000_000,
        };
        let v = arrow::compute::cast(c, &DataType::Int64).map_err(|e| KernelError::Schema { column: name.into(), reason: e.to_string() })?;
        let v = v.as_primitive::<arrow::datatypes::Int64Type>();
        return Ok((0..v.len()).map(|i| if v.is_null(i) { NO_TIME } else { v.value(i).div_euclid(per_second) }).collect());
    }
    let s = strings(c, name)?;
    Ok((0..s.len())
        .map(|i| if s.is_null(i) { NO_TIME } else { calendar::parse_datetime(s.value(i).as_bytes()).unwrap_or(NO_TIME) })
        .collect())
}

impl RideColumns {
    /// Extracts the ride columns of `batch`; `fare_amount` is required when `need_fare`.
    pub fn from_batch(batch: &RecordBatch, need_fare: bool) -> Result<Self, KernelError> {
        let fare = match batch.column_by_name(schema::FARE) {
            Some(_) => Some(floats(batch, schema::FARE)?),
            None if need_fare => return Err(KernelError::Schema { column: schema::FARE.into(), reason: "missing".into() }),
            None => None,
        };
        let key = batch.column_by_name(schema::KEY).map(|c| strings(c, schema::KEY)).transpose()?;
        Ok(Self {
            len: batch.num_rows(),
            ts: times(column(batch, schema::PICKUP_DATETIME)?)?,
            plon: floats(batch, schema::PICKUP_LON)?,
            plat: floats(batch, schema::PICKUP_LAT)?,
            dlon: floats(batch, schema::DROPOFF_LON)?,
            dlat: floats(batch, schema::DROPOFF_LAT)?,
            passengers: numeric(batch, schema::PASSENGERS, &DataType::Int64)?.as_primitive().clone(),
            fare,
            key,
        })
    }
}
