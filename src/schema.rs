//! Column names and Arrow schemas of rides: the Kaggle `train.csv` columns, plus `row_id` in
//! the data source.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Rows per Arrow batch wherever the caller does not choose (reading the source, generating,
/// importing, appending): large enough that per-batch costs vanish, small enough that a few
/// batches in flight keep memory flat.
pub const BATCH_ROWS: usize = 65_536;

/// Unique ride key (pickup time plus a sequence number).
pub const KEY: &str = "key";
/// Fare paid in dollars, tolls included.
pub const FARE: &str = "fare_amount";
/// Pickup time, `YYYY-MM-DD HH:MM:SS UTC`.
pub const PICKUP_DATETIME: &str = "pickup_datetime";
/// Pickup longitude.
pub const PICKUP_LON: &str = "pickup_longitude";
/// Pickup latitude.
pub const PICKUP_LAT: &str = "pickup_latitude";
/// Dropoff longitude.
pub const DROPOFF_LON: &str = "dropoff_longitude";
/// Dropoff latitude.
pub const DROPOFF_LAT: &str = "dropoff_latitude";
/// Passengers.
pub const PASSENGERS: &str = "passenger_count";
/// Immutable, contiguous arrival index of a row in the data source.
pub const ROW_ID: &str = "row_id";
/// Parquet key-value metadata of a month file (pending or source): the month of its rows,
/// `YYYY-MM`, written with the file so a renamed file is caught.
pub const MONTH_METADATA_KEY: &str = "taxifare.month";
/// Generator-only column: the fare a ride is expected to cost.
pub const EXPECTED_FARE: &str = "expected_fare";

/// The Kaggle ride schema.
#[must_use]
pub fn ride_schema() -> SchemaRef {
    Arc::new(Schema::new(ride_fields()))
}

fn ride_fields() -> Vec<Field> {
    vec![
        Field::new(KEY, DataType::Utf8, true),
        Field::new(FARE, DataType::Float64, true),
        Field::new(PICKUP_DATETIME, DataType::Utf8, true),
        Field::new(PICKUP_LON, DataType::Float64, true),
        Field::new(PICKUP_LAT, DataType::Float64, true),
        Field::new(DROPOFF_LON, DataType::Float64, true),
        Field::new(DROPOFF_LAT, DataType::Float64, true),
        Field::new(PASSENGERS, DataType::Int64, true),
    ]
}

/// The data-source schema: `row_id` then the ride columns.
#[must_use]
pub fn source_schema() -> SchemaRef {
    let mut fields = vec![Field::new(ROW_ID, DataType::Int64, false)];
    fields.extend(ride_fields());
    Arc::new(Schema::new(fields))
}

/// The generator's schema with the expected fare appended.
#[must_use]
pub fn ride_schema_with_expected() -> SchemaRef {
    let mut fields = ride_fields();
    fields.push(Field::new(EXPECTED_FARE, DataType::Float64, true));
    Arc::new(Schema::new(fields))
}
