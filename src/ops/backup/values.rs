//! A column's value in the dump and back: numbers and booleans as JSON, text as strings, bytes
//! as base64, times as RFC 3339. Values are read by the source's column kinds and bound by the
//! target's, so a time read from PostgreSQL goes into SQLite's TEXT column and SQLite's text
//! into PostgreSQL's TIMESTAMPTZ.

use anyhow::{Context, anyhow};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::query::Query;

use super::schema::Kind;

/// A dumped value parsed for a column of the target, ready to bind.
#[derive(Debug, PartialEq)]
pub enum Param {
    Int64(Option<i64>),
    Int32(Option<i32>),
    Real(Option<f64>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Time(Option<DateTime<Utc>>),
}

/// What dump and restore need of a database driver: its rows and queries are types of its
/// own, which the same generic code reads and binds through this.
pub trait Driver: sqlx::Database {
    /// Column `index` of `row`, read as `kind`, in the dump's encoding.
    fn cell(row: &Self::Row, index: usize, kind: Kind) -> anyhow::Result<Value>;
    fn bind(
        query: Query<'_, Self, Self::Arguments>,
        param: Param,
    ) -> Query<'_, Self, Self::Arguments>;
}

macro_rules! driver {
    ($db:ty) => {
        impl Driver for $db {
            fn cell(
                row: &<$db as sqlx::Database>::Row,
                index: usize,
                kind: Kind,
            ) -> anyhow::Result<Value> {
                use sqlx::Row;
                Ok(match kind {
                    Kind::Int64 => json(row.try_get::<Option<i64>, _>(index)?),
                    Kind::Int32 => json(row.try_get::<Option<i32>, _>(index)?),
                    Kind::Real => match row.try_get::<Option<f64>, _>(index)? {
                        None => Value::Null,
                        Some(x) => serde_json::Number::from_f64(x)
                            .map(Value::Number)
                            .ok_or_else(|| anyhow!("{x} has no JSON form"))?,
                    },
                    Kind::Bool => json(row.try_get::<Option<bool>, _>(index)?),
                    Kind::Text | Kind::Json => json(row.try_get::<Option<String>, _>(index)?),
                    Kind::Bytes => json(
                        row.try_get::<Option<Vec<u8>>, _>(index)?
                            .map(|b| b64().encode(b)),
                    ),
                    Kind::Time => json(
                        row.try_get::<Option<DateTime<Utc>>, _>(index)?
                            .map(time_text),
                    ),
                })
            }

            fn bind(
                query: Query<'_, $db, <$db as sqlx::Database>::Arguments>,
                param: Param,
            ) -> Query<'_, $db, <$db as sqlx::Database>::Arguments> {
                match param {
                    Param::Int64(v) => query.bind(v),
                    Param::Int32(v) => query.bind(v),
                    Param::Real(v) => query.bind(v),
                    Param::Bool(v) => query.bind(v),
                    Param::Text(v) => query.bind(v),
                    Param::Bytes(v) => query.bind(v),
                    Param::Time(v) => query.bind(v),
                }
            }
        }
    };
}
driver!(sqlx::Sqlite);
driver!(sqlx::Postgres);

/// Parses a dumped value for a target column of `kind`. Times are accepted with any offset:
/// the first release wrote `Z`, SQLite's text and [`time_text`] have `+00:00`.
pub fn param(kind: Kind, value: &Value) -> anyhow::Result<Param> {
    Ok(match kind {
        Kind::Int64 => Param::Int64(nullable(value, Value::as_i64, "an integer")?),
        Kind::Int32 => Param::Int32(
            nullable(value, Value::as_i64, "an integer")?
                .map(i32::try_from)
                .transpose()
                .context("out of range for a 32-bit integer")?,
        ),
        Kind::Real => Param::Real(nullable(value, Value::as_f64, "a number")?),
        Kind::Bool => Param::Bool(nullable(value, Value::as_bool, "a boolean")?),
        Kind::Text | Kind::Json => Param::Text(nullable(value, text, "a string")?),
        Kind::Bytes => Param::Bytes(
            nullable(value, text, "a string")?
                .map(|s| b64().decode(s))
                .transpose()
                .context("not base64")?,
        ),
        Kind::Time => Param::Time(
            nullable(value, text, "a string")?
                .map(|s| DateTime::parse_from_rfc3339(&s).map(|t| t.to_utc()))
                .transpose()
                .context("not an RFC 3339 time")?,
        ),
    })
}

/// A time as SQLite's driver writes it into its TEXT columns, so that a PostgreSQL backup
/// restored into SQLite holds the text the application itself would have written (and sorts
/// with it).
pub fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn json<T: Into<Value>>(value: Option<T>) -> Value {
    value.map_or(Value::Null, Into::into)
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

fn nullable<T>(
    value: &Value,
    read: impl Fn(&Value) -> Option<T>,
    what: &str,
) -> anyhow::Result<Option<T>> {
    match value {
        Value::Null => Ok(None),
        v => read(v).map(Some).ok_or_else(|| anyhow!("not {what}")),
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dumped_values_parse_for_their_target_column() {
        let time = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
            .unwrap()
            .to_utc();
        assert_eq!(time_text(time), "2026-01-02T03:04:05.123456789+00:00");
        for written in ["2026-01-02T03:04:05.123456789Z", &time_text(time)] {
            assert_eq!(
                param(Kind::Time, &json!(written)).unwrap(),
                Param::Time(Some(time))
            );
        }
        assert_eq!(
            param(Kind::Bytes, &json!("AAH/")).unwrap(),
            Param::Bytes(Some(vec![0, 1, 255]))
        );
        assert_eq!(
            param(Kind::Int32, &json!(200)).unwrap(),
            Param::Int32(Some(200))
        );
        assert_eq!(param(Kind::Text, &Value::Null).unwrap(), Param::Text(None));
        assert_eq!(
            param(Kind::Real, &json!(1)).unwrap(),
            Param::Real(Some(1.0))
        );
        for (kind, bad) in [
            (Kind::Int32, json!(1_i64 << 40)),
            (Kind::Int64, json!("1")),
            (Kind::Int64, json!(1.5)),
            (Kind::Bool, json!(1)),
            (Kind::Text, json!(1)),
            (Kind::Bytes, json!("not base64!")),
            (Kind::Time, json!("2026-01-02 03:04:05")),
        ] {
            assert!(param(kind, &bad).is_err(), "{kind:?} {bad}");
        }
    }
}
