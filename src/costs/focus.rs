//! FOCUS (FinOps Open Cost and Usage Specification) 1.0–1.2 billing exports: read as a
//! stream of CSV records (gzip or plain), each attributed to a workspace and summed by
//! period, source, resource, service and tags, handed over in bounded batches. Pure: no
//! database, no HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};

use super::catalogue::ParseError;

/// Where a billing line's spend goes.
#[derive(Debug, Default)]
pub struct Attribution {
    /// Ids and ARNs recorded in state → workspace id.
    pub by_resource: HashMap<String, i64>,
    /// Workspace name → id, for the fallback tag.
    pub by_name: HashMap<String, i64>,
    /// The tag naming a line's workspace when its resource is not in any state.
    pub tag: String,
}

impl Attribution {
    /// The workspace of a line, and how it was found: `resource`, `tag` or `none`.
    pub fn attribute(
        &self,
        resource_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> (Option<i64>, &'static str) {
        if !resource_id.is_empty() {
            if let Some(ws) = self.by_resource.get(resource_id) {
                return (Some(*ws), "resource");
            }
            // `arn:aws:ec2:…:instance/i-0abc` against a state's `i-0abc`.
            let tail = resource_id
                .rsplit_once('/')
                .or_else(|| resource_id.rsplit_once(':'))
                .map(|(_, t)| t);
            if let Some(ws) = tail.and_then(|t| self.by_resource.get(t)) {
                return (Some(*ws), "resource");
            }
        }
        if let Some(ws) = tags.get(&self.tag).and_then(|name| self.by_name.get(name)) {
            return (Some(*ws), "tag");
        }
        (None, "none")
    }
}

/// What lines are summed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub source: String,
    /// `YYYY-MM` of the billing period.
    pub period: String,
    pub workspace_id: Option<i64>,
    pub attribution: &'static str,
    pub resource_id: String,
    pub service: String,
    /// JSON object with sorted keys.
    pub tags: String,
    pub currency: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    pub effective: f64,
    pub billed: f64,
    pub list: f64,
    /// The last day of the month with charges (for forecasts).
    pub last_day: i64,
    pub lines: i64,
}

/// What an import read.
#[derive(Debug, Default)]
pub struct Summary {
    pub lines: u64,
    /// `(source, period)` pairs it holds.
    pub periods: BTreeSet<(String, String)>,
}

fn at(line: u64, message: impl Into<String>) -> ParseError {
    ParseError {
        line: Some(line),
        message: message.into(),
    }
}

/// `YYYY-MM` and the day of a FOCUS date-time (`2024-05-01T00:00:00Z`, `2024-05-01 …`).
fn month_and_day(text: &str) -> Option<(String, i64)> {
    let date = text.get(..10)?;
    let parsed = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some((
        date[..7].to_string(),
        i64::from(chrono::Datelike::day(&parsed)),
    ))
}

/// Reads a FOCUS CSV from `reader` (gzip is recognised by its magic bytes), summing lines
/// and handing the sums to `sink` whenever `flush_at` keys are held, and at the end.
/// `source` overrides the source each line names (`ProviderName/BillingAccountId`).
pub fn read(
    reader: impl Read,
    attribution: &Attribution,
    source: Option<&str>,
    flush_at: usize,
    sink: &mut dyn FnMut(Vec<(Key, Sums)>) -> Result<(), ParseError>,
) -> Result<Summary, ParseError> {
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let gzip = buffered
        .fill_buf()
        .map_err(|e| at(1, format!("cannot read: {e}")))?
        .starts_with(&[0x1f, 0x8b]);
    let input: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(input);
    let csv_error = |e: csv::Error| match e.position() {
        Some(p) => at(p.line(), e.to_string()),
        None => at(1, e.to_string()),
    };
    let headers = csv.headers().map_err(csv_error)?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
    };
    let need = |name: &str| {
        column(name).ok_or_else(|| at(1, format!("no {name} column: not a FOCUS export")))
    };
    let billed = need("BilledCost")?;
    let effective = need("EffectiveCost")?;
    let period_start = need("BillingPeriodStart")?;
    let currency = need("BillingCurrency")?;
    let list = column("ListCost");
    let charge_start = column("ChargePeriodStart");
    let resource = column("ResourceId");
    let service = column("ServiceName");
    let tags = column("Tags");
    let provider = column("ServiceProviderName").or_else(|| column("ProviderName"));
    let account = column("BillingAccountId");

    let mut sums: HashMap<Key, Sums> = HashMap::new();
    let mut summary = Summary::default();
    let mut record = csv::StringRecord::new();
    while csv.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, csv::Position::line);
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("").trim();
        let money = |i: Option<usize>, name: &str, required: bool| -> Result<f64, ParseError> {
            let text = field(i);
            if text.is_empty() && !required {
                return Ok(0.0);
            }
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| at(line, format!("{name} {text:?} is not a number")))
        };
        let billed_cost = money(Some(billed), "BilledCost", true)?;
        let effective_cost = money(Some(effective), "EffectiveCost", true)?;
        let list_cost = money(list, "ListCost", false)?;
        let (period, _) = month_and_day(field(Some(period_start))).ok_or_else(|| {
            at(
                line,
                format!(
                    "BillingPeriodStart {:?} is not a date",
                    field(Some(period_start))
                ),
            )
        })?;
        let day = match charge_start {
            Some(_) => {
                let text = field(charge_start);
                month_and_day(text)
                    .ok_or_else(|| at(line, format!("ChargePeriodStart {text:?} is not a date")))?
                    .1
            }
            None => 1,
        };
        let tag_map: BTreeMap<String, String> = match field(tags) {
            "" => BTreeMap::new(),
            text => {
                let value: serde_json::Value = serde_json::from_str(text)
                    .map_err(|_| at(line, format!("Tags {text:?} is not a JSON object")))?;
                let object = value
                    .as_object()
                    .ok_or_else(|| at(line, format!("Tags {text:?} is not a JSON object")))?;
                object
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect()
            }
        };
        let resource_id = field(resource);
        let (workspace_id, how) = attribution.attribute(resource_id, &tag_map);
        let source = match source {
            Some(s) => s.to_string(),
            None => match (field(provider), field(account)) {
                ("", "") => "focus".to_string(),
                (p, "") => p.to_string(),
                ("", a) => a.to_string(),
                (p, a) => format!("{p}/{a}"),
            },
        };
        summary.periods.insert((source.clone(), period.clone()));
        let key = Key {
            source,
            period,
            workspace_id,
            attribution: how,
            resource_id: resource_id.to_string(),
            service: field(service).to_string(),
            tags: serde_json::to_string(&tag_map).unwrap_or_else(|_| "{}".into()),
            currency: field(Some(currency)).to_string(),
        };
        let entry = sums.entry(key).or_default();
        entry.effective += effective_cost;
        entry.billed += billed_cost;
        entry.list += list_cost;
        entry.last_day = entry.last_day.max(day);
        entry.lines += 1;
        summary.lines += 1;
        if sums.len() >= flush_at {
            sink(sums.drain().collect())?;
        }
    }
    if !sums.is_empty() {
        sink(sums.drain().collect())?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "BilledCost,EffectiveCost,ListCost,BillingCurrency,BillingPeriodStart,ChargePeriodStart,ResourceId,ServiceName,Tags,ProviderName,BillingAccountId\n\
1.5,1.25,2,USD,2025-05-01T00:00:00Z,2025-05-03T00:00:00Z,arn:aws:ec2:us-east-1:1:instance/i-1,EC2,,AWS,111\n\
2,2,2,USD,2025-05-01T00:00:00Z,2025-05-04T00:00:00Z,arn:aws:ec2:us-east-1:1:instance/i-1,EC2,,AWS,111\n\
-3,-3,0,USD,2025-05-01T00:00:00Z,2025-05-04T00:00:00Z,,Credits,\"{\"\"terrace-workspace\"\":\"\"web\"\"}\",AWS,111\n\
4,4,4,USD,2025-05-01T00:00:00Z,2025-05-05T00:00:00Z,vol-9,EBS,,AWS,111\n";

    fn attribution() -> Attribution {
        Attribution {
            by_resource: HashMap::from([("i-1".to_string(), 7)]),
            by_name: HashMap::from([("web".to_string(), 8)]),
            tag: "terrace-workspace".into(),
        }
    }

    #[test]
    fn lines_are_attributed_by_resource_then_tag_and_summed() {
        let mut all = Vec::new();
        let summary = read(CSV.as_bytes(), &attribution(), None, 1000, &mut |b| {
            all.extend(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(summary.lines, 4);
        assert_eq!(
            summary.periods.into_iter().collect::<Vec<_>>(),
            vec![("AWS/111".to_string(), "2025-05".to_string())]
        );
        let by = |ws: Option<i64>| all.iter().find(|(k, _)| k.workspace_id == ws).unwrap();
        let (k, s) = by(Some(7));
        assert_eq!(
            (k.attribution, s.lines, s.effective, s.last_day),
            ("resource", 2, 3.25, 4)
        );
        assert_eq!(by(Some(8)).1.effective, -3.0);
        assert_eq!(by(None).0.attribution, "none");
    }

    #[test]
    fn a_malformed_line_is_named_and_gzip_is_read() {
        let bad = CSV.replace("4,4,4,", "4,four,4,");
        let err = read(bad.as_bytes(), &attribution(), None, 1000, &mut |_| Ok(())).unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");
        assert!(err.message.contains("EffectiveCost"), "{err}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, CSV.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        let summary = read(&bytes[..], &attribution(), Some("x"), 1, &mut |b| {
            assert!(b.len() <= 1);
            Ok(())
        })
        .unwrap();
        assert_eq!(summary.lines, 4);
    }
}
