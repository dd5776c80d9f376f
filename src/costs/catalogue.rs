//! Price catalogues: the import formats (AWS Price List bulk offer files in CSV and JSON,
//! OpenInfraQuote's `prices.csv`, Terrace's own CSV), parsed as streams of rows, and the
//! in-memory index estimates look prices up in. Pure: no database, no HTTP.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

/// One price of a catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceRow {
    pub provider: String,
    pub service: String,
    pub region: String,
    /// Normalised attribute names (AWS: lowercase letters and digits) → values.
    pub attributes: BTreeMap<String, String>,
    pub unit: String,
    pub price: f64,
    pub currency: String,
}

/// The formats `terrace prices import --format` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    AwsCsv,
    AwsJson,
    Oiq,
    Terrace,
}

impl Format {
    pub const NAMES: &'static str = "aws-csv, aws-json, oiq or terrace";

    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "aws-csv" => Some(Format::AwsCsv),
            "aws-json" => Some(Format::AwsJson),
            "oiq" => Some(Format::Oiq),
            "terrace" => Some(Format::Terrace),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::AwsCsv => "aws-csv",
            Format::AwsJson => "aws-json",
            Format::Oiq => "oiq",
            Format::Terrace => "terrace",
        }
    }
}

/// Why a file could not be read, with the line when one is to blame.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn at(line: u64, message: impl Into<String>) -> ParseError {
    ParseError {
        line: Some(line),
        message: message.into(),
    }
}

fn whole(message: impl Into<String>) -> ParseError {
    ParseError {
        line: None,
        message: message.into(),
    }
}

/// What a file says about itself.
#[derive(Debug, Default, Clone)]
pub struct Meta {
    /// The publication date the file states, if any.
    pub published: Option<String>,
}

/// Rows are handed over in batches of this many.
pub const BATCH: usize = 2000;

/// AWS attribute names, lowercased without spaces and punctuation, so that the CSV's
/// `Instance Type` and the JSON's `instanceType` are both `instancetype`.
pub fn normalise(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Region codes of the location names older AWS offer files use instead of `Region Code`.
fn region_of_location(location: &str) -> Option<&'static str> {
    Some(match location {
        "US East (N. Virginia)" => "us-east-1",
        "US East (Ohio)" => "us-east-2",
        "US West (N. California)" => "us-west-1",
        "US West (Oregon)" => "us-west-2",
        "EU (Ireland)" | "Europe (Ireland)" => "eu-west-1",
        "EU (London)" | "Europe (London)" => "eu-west-2",
        "EU (Paris)" | "Europe (Paris)" => "eu-west-3",
        "EU (Frankfurt)" | "Europe (Frankfurt)" => "eu-central-1",
        "EU (Stockholm)" | "Europe (Stockholm)" => "eu-north-1",
        "Asia Pacific (Tokyo)" => "ap-northeast-1",
        "Asia Pacific (Seoul)" => "ap-northeast-2",
        "Asia Pacific (Singapore)" => "ap-southeast-1",
        "Asia Pacific (Sydney)" => "ap-southeast-2",
        "Asia Pacific (Mumbai)" => "ap-south-1",
        "Canada (Central)" => "ca-central-1",
        "South America (Sao Paulo)" => "sa-east-1",
        _ => return None,
    })
}

/// Reads `reader` in `format`, handing rows to `sink` in batches.
pub fn parse(
    format: Format,
    reader: impl Read,
    sink: &mut dyn FnMut(Vec<PriceRow>) -> Result<(), ParseError>,
) -> Result<Meta, ParseError> {
    match format {
        Format::AwsCsv => aws_csv(reader, sink),
        Format::AwsJson => aws_json(reader, sink),
        Format::Oiq => oiq(reader, sink),
        Format::Terrace => terrace(reader, sink),
    }
}

fn csv_reader(reader: impl Read) -> csv::Reader<impl Read> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(reader)
}

fn csv_error(e: &csv::Error) -> ParseError {
    match e.position() {
        Some(p) => at(p.line(), e.to_string()),
        None => whole(e.to_string()),
    }
}

fn number(line: u64, what: &str, text: &str) -> Result<f64, ParseError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| at(line, format!("{what} {text:?} is not a number")))
}

/// An AWS Price List offer file in CSV: five lines about the file, a header row starting
/// with `SKU`, then one row per price dimension. Only on-demand prices of the first tier
/// are kept.
fn aws_csv(
    reader: impl Read,
    sink: &mut dyn FnMut(Vec<PriceRow>) -> Result<(), ParseError>,
) -> Result<Meta, ParseError> {
    let mut csv = csv_reader(reader);
    let mut meta = Meta::default();
    let mut header: Option<Vec<String>> = None;
    let mut batch = Vec::with_capacity(BATCH);
    let mut record = csv::StringRecord::new();
    while csv.read_record(&mut record).map_err(|e| csv_error(&e))? {
        let line = record.position().map_or(0, csv::Position::line);
        let Some(columns) = &header else {
            match record.get(0) {
                Some("SKU") => header = Some(record.iter().map(normalise).collect()),
                Some("Publication Date") => meta.published = record.get(1).map(str::to_string),
                _ => {}
            }
            continue;
        };
        if record.len() != columns.len() {
            return Err(at(
                line,
                format!(
                    "{} fields where the header has {}",
                    record.len(),
                    columns.len()
                ),
            ));
        }
        let mut fields: HashMap<&str, &str> = HashMap::with_capacity(columns.len());
        for (name, value) in columns.iter().zip(record.iter()) {
            fields.insert(name.as_str(), value);
        }
        if fields.get("termtype").copied() != Some("OnDemand") {
            continue;
        }
        if !matches!(fields.get("startingrange").copied(), None | Some("" | "0")) {
            continue;
        }
        let price = number(
            line,
            "PricePerUnit",
            fields.get("priceperunit").copied().unwrap_or(""),
        )?;
        let region = fields
            .get("regioncode")
            .copied()
            .filter(|r| !r.is_empty())
            .or_else(|| fields.get("location").and_then(|l| region_of_location(l)))
            .unwrap_or("global")
            .to_string();
        const PRICING: [&str; 13] = [
            "sku",
            "offertermcode",
            "ratecode",
            "termtype",
            "pricedescription",
            "effectivedate",
            "startingrange",
            "endingrange",
            "unit",
            "priceperunit",
            "currency",
            "regioncode",
            "servicecode",
        ];
        let attributes = columns
            .iter()
            .zip(record.iter())
            .filter(|(name, value)| !value.is_empty() && !PRICING.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.to_string()))
            .collect();
        batch.push(PriceRow {
            provider: "aws".into(),
            service: fields.get("servicecode").copied().unwrap_or("").to_string(),
            region,
            attributes,
            unit: fields.get("unit").copied().unwrap_or("").to_string(),
            price,
            currency: fields.get("currency").copied().unwrap_or("USD").to_string(),
        });
        if batch.len() >= BATCH {
            sink(std::mem::take(&mut batch))?;
        }
    }
    if header.is_none() {
        return Err(whole(
            "no header row starting with SKU: not an AWS offer CSV",
        ));
    }
    if !batch.is_empty() {
        sink(batch)?;
    }
    Ok(meta)
}

/// An AWS Price List offer file in JSON: `products` (SKU → family and attributes) and
/// `terms.OnDemand` (SKU → price dimensions).
fn aws_json(
    reader: impl Read,
    sink: &mut dyn FnMut(Vec<PriceRow>) -> Result<(), ParseError>,
) -> Result<Meta, ParseError> {
    use serde_json::Value;
    let doc: Value = serde_json::from_reader(reader)
        .map_err(|e| at(e.line() as u64, format!("not JSON: {e}")))?;
    let products = doc["products"]
        .as_object()
        .ok_or_else(|| whole("no `products` object: not an AWS offer JSON file"))?;
    let service = doc["offerCode"].as_str().unwrap_or("").to_string();
    let meta = Meta {
        published: doc["publicationDate"].as_str().map(str::to_string),
    };
    let mut batch = Vec::with_capacity(BATCH);
    for (sku, terms) in doc["terms"]["OnDemand"].as_object().into_iter().flatten() {
        let Some(product) = products.get(sku) else {
            continue;
        };
        let mut attributes: BTreeMap<String, String> = product["attributes"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((normalise(k), v.as_str()?.to_string())))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if let Some(family) = product["productFamily"].as_str() {
            attributes.insert("productfamily".into(), family.to_string());
        }
        let region = attributes
            .remove("regioncode")
            .or_else(|| {
                attributes
                    .get("location")
                    .and_then(|l| region_of_location(l))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "global".into());
        let service = attributes
            .remove("servicecode")
            .unwrap_or_else(|| service.clone());
        for term in terms.as_object().into_iter().flatten().map(|(_, t)| t) {
            for dim in term["priceDimensions"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, d)| d)
            {
                if !matches!(dim["beginRange"].as_str(), None | Some("0")) {
                    continue;
                }
                let Some((currency, amount)) = dim["pricePerUnit"]
                    .as_object()
                    .and_then(|p| p.iter().next())
                else {
                    continue;
                };
                let price = amount
                    .as_str()
                    .and_then(|a| a.parse::<f64>().ok())
                    .ok_or_else(|| whole(format!("SKU {sku}: price {amount} is not a number")))?;
                batch.push(PriceRow {
                    provider: "aws".into(),
                    service: service.clone(),
                    region: region.clone(),
                    attributes: attributes.clone(),
                    unit: dim["unit"].as_str().unwrap_or("").to_string(),
                    price,
                    currency: currency.clone(),
                });
                if batch.len() >= BATCH {
                    sink(std::mem::take(&mut batch))?;
                }
            }
        }
    }
    if !batch.is_empty() {
        sink(batch)?;
    }
    Ok(meta)
}

/// `key=value&key=value` with percent-encoded parts (OpenInfraQuote's match sets).
fn match_set(text: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=')?;
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        out.insert(decode(k), decode(v));
    }
    Some(out)
}

/// OpenInfraQuote's `prices.csv`: `service, product_family, match_set, pricing_match_set,
/// price, price_type, ccy`, the match sets as `key=value&…`. Attributes keep OIQ's names.
fn oiq(
    reader: impl Read,
    sink: &mut dyn FnMut(Vec<PriceRow>) -> Result<(), ParseError>,
) -> Result<Meta, ParseError> {
    let mut csv = csv_reader(reader);
    let mut batch = Vec::with_capacity(BATCH);
    let mut record = csv::StringRecord::new();
    while csv.read_record(&mut record).map_err(|e| csv_error(&e))? {
        let line = record.position().map_or(0, csv::Position::line);
        if record.get(0) == Some("service") {
            continue;
        }
        if record.len() != 7 {
            return Err(at(
                line,
                format!("{} fields; OpenInfraQuote rows have 7", record.len()),
            ));
        }
        let field = |i: usize| record.get(i).unwrap_or("");
        let mut attributes = match_set(field(2))
            .ok_or_else(|| at(line, format!("match set {:?} is not key=value&…", field(2))))?;
        let pricing = match_set(field(3)).ok_or_else(|| {
            at(
                line,
                format!("pricing match set {:?} is not key=value&…", field(3)),
            )
        })?;
        attributes.extend(pricing);
        attributes.insert("productfamily".into(), field(1).to_string());
        let price = number(line, "price", field(4))?;
        let unit = match field(5) {
            "t" | "h" => "Hrs".to_string(),
            "o" => "Op".to_string(),
            "d" => "GB".to_string(),
            other => match other.strip_prefix("a=") {
                Some(attr) => {
                    attributes.insert("amount_attr".into(), attr.to_string());
                    "Units".to_string()
                }
                None => {
                    return Err(at(
                        line,
                        format!("price type {other:?} is not t, h, o, d or a=…"),
                    ));
                }
            },
        };
        let region = attributes
            .get("region")
            .cloned()
            .unwrap_or_else(|| "global".into());
        let provider = attributes
            .get("service_provider")
            .cloned()
            .unwrap_or_else(|| "aws".into());
        batch.push(PriceRow {
            provider,
            service: field(0).to_string(),
            region,
            attributes,
            unit,
            price,
            currency: field(6).to_string(),
        });
        if batch.len() >= BATCH {
            sink(std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        sink(batch)?;
    }
    Ok(Meta::default())
}

/// Terrace's own CSV: `provider,service,region,unit,price,currency,attributes` (a header
/// row first; `#` starts a comment line), attributes as `key=value&…`.
fn terrace(
    reader: impl Read,
    sink: &mut dyn FnMut(Vec<PriceRow>) -> Result<(), ParseError>,
) -> Result<Meta, ParseError> {
    let mut csv = csv_reader(reader);
    let mut batch = Vec::with_capacity(BATCH);
    let mut record = csv::StringRecord::new();
    let mut seen_header = false;
    while csv.read_record(&mut record).map_err(|e| csv_error(&e))? {
        let line = record.position().map_or(0, csv::Position::line);
        if !seen_header {
            let names: Vec<&str> = record.iter().map(str::trim).collect();
            if names
                != [
                    "provider",
                    "service",
                    "region",
                    "unit",
                    "price",
                    "currency",
                    "attributes",
                ]
            {
                return Err(at(
                    line,
                    "the header must be provider,service,region,unit,price,currency,attributes",
                ));
            }
            seen_header = true;
            continue;
        }
        if record.len() != 7 {
            return Err(at(
                line,
                format!("{} fields where the header has 7", record.len()),
            ));
        }
        let field = |i: usize| record.get(i).unwrap_or("").trim();
        let attributes = match_set(field(6)).ok_or_else(|| {
            at(
                line,
                format!("attributes {:?} are not key=value&…", field(6)),
            )
        })?;
        if field(1).is_empty() || field(3).is_empty() {
            return Err(at(line, "service and unit must not be empty"));
        }
        batch.push(PriceRow {
            provider: field(0).to_string(),
            service: field(1).to_string(),
            region: field(2).to_string(),
            attributes,
            unit: field(3).to_string(),
            price: number(line, "price", field(4))?,
            currency: field(5).to_string(),
        });
        if batch.len() >= BATCH {
            sink(std::mem::take(&mut batch))?;
        }
    }
    if !seen_header {
        return Err(whole("empty file: no header row"));
    }
    if !batch.is_empty() {
        sink(batch)?;
    }
    Ok(Meta::default())
}

/// The sample catalogue built into Terrace.
pub const SAMPLE_CSV: &str = include_str!("data/sample-prices.csv");
/// Its name in estimates.
pub const SAMPLE_VERSION: &str = "sample-2025-01-01";
/// The date its prices were published.
pub const SAMPLE_PUBLISHED: &str = "2025-01-01";

/// A price as looked up.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub attributes: BTreeMap<String, String>,
    pub unit: String,
    pub price: f64,
    pub currency: String,
}

/// A catalogue version in memory, indexed by service and region.
#[derive(Debug, Default)]
pub struct Catalogue {
    /// The version estimates name: the catalogue's id, or the sample's name.
    pub version: String,
    pub sample: bool,
    pub published: Option<String>,
    index: HashMap<(String, String), Vec<Price>>,
}

impl Catalogue {
    pub fn new(version: String, sample: bool, published: Option<String>) -> Catalogue {
        Catalogue {
            version,
            sample,
            published,
            index: HashMap::new(),
        }
    }

    pub fn insert(&mut self, row: PriceRow) {
        self.index
            .entry((row.service, row.region))
            .or_default()
            .push(Price {
                attributes: row.attributes,
                unit: row.unit,
                price: row.price,
                currency: row.currency,
            });
    }

    /// The built-in sample.
    pub fn sample() -> Catalogue {
        let mut catalogue =
            Catalogue::new(SAMPLE_VERSION.into(), true, Some(SAMPLE_PUBLISHED.into()));
        let mut rows = Vec::new();
        // The sample is part of the program: a parse failure is caught by its unit test.
        let _ = terrace(SAMPLE_CSV.as_bytes(), &mut |batch| {
            rows.extend(batch);
            Ok(())
        });
        for row in rows {
            catalogue.insert(row);
        }
        catalogue
    }

    /// The cheapest price of `service` in `region` (with `unit`, when given) whose attributes
    /// hold every `(name, value)` of `want`.
    pub fn find(
        &self,
        service: &str,
        region: &str,
        unit: Option<&str>,
        want: &[(String, String)],
    ) -> Option<&Price> {
        self.index
            .get(&(service.to_string(), region.to_string()))?
            .iter()
            .filter(|p| unit.is_none_or(|u| p.unit == u))
            .filter(|p| {
                want.iter()
                    .all(|(k, v)| p.attributes.get(k).is_some_and(|a| a == v))
            })
            .min_by(|a, b| a.price.total_cmp(&b.price))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(format: Format, text: &str) -> Result<(Meta, Vec<PriceRow>), ParseError> {
        let mut rows = Vec::new();
        let meta = parse(format, text.as_bytes(), &mut |b| {
            rows.extend(b);
            Ok(())
        })?;
        Ok((meta, rows))
    }

    #[test]
    fn the_sample_parses_and_answers_lookups() {
        let (_, rows) = all(Format::Terrace, SAMPLE_CSV).unwrap();
        assert!(rows.len() > 40);
        let sample = Catalogue::sample();
        let want = vec![("instancetype".to_string(), "t3.micro".to_string())];
        let price = sample
            .find("AmazonEC2", "us-east-1", Some("Hrs"), &want)
            .unwrap();
        assert!((price.price - 0.0104).abs() < 1e-9);
        assert!(sample.find("AmazonEC2", "mars-1", None, &want).is_none());
    }

    #[test]
    fn an_aws_csv_keeps_on_demand_first_tier_prices() {
        let text = "\"FormatVersion\",\"v1.0\"\n\"Disclaimer\",\"x\"\n\"Publication Date\",\"2025-03-01T00:00:00Z\"\n\"Version\",\"1\"\n\"OfferCode\",\"AmazonEC2\"\n\
\"SKU\",\"OfferTermCode\",\"RateCode\",\"TermType\",\"PriceDescription\",\"EffectiveDate\",\"StartingRange\",\"EndingRange\",\"Unit\",\"PricePerUnit\",\"Currency\",\"Product Family\",\"serviceCode\",\"Location\",\"Instance Type\",\"Region Code\"\n\
\"A\",\"JRTCKXETXF\",\"A.1\",\"OnDemand\",\"d\",\"2025-01-01\",\"\",\"\",\"Hrs\",\"0.0104\",\"USD\",\"Compute Instance\",\"AmazonEC2\",\"US East (N. Virginia)\",\"t3.micro\",\"us-east-1\"\n\
\"A\",\"4NA7Y494T4\",\"A.2\",\"Reserved\",\"d\",\"2025-01-01\",\"\",\"\",\"Hrs\",\"0.006\",\"USD\",\"Compute Instance\",\"AmazonEC2\",\"US East (N. Virginia)\",\"t3.micro\",\"us-east-1\"\n";
        let (meta, rows) = all(Format::AwsCsv, text).unwrap();
        assert_eq!(meta.published.as_deref(), Some("2025-03-01T00:00:00Z"));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].attributes["instancetype"], "t3.micro");
        assert_eq!(rows[0].region, "us-east-1");
        let bad = text.replace("\"0.0104\"", "\"cheap\"");
        let err = all(Format::AwsCsv, &bad).unwrap_err();
        assert_eq!(err.line, Some(7), "{err}");
    }

    #[test]
    fn oiq_rows_keep_their_match_sets() {
        let text = "service,product_family,match_set,pricing_match_set,price,price_type,ccy\n\
AmazonEC2,Compute Instance,type=aws_instance&values.instance_type=m5.large,service_provider=aws&purchase_option=on_demand&region=us-east-1&os=linux,0.0960000000,t,USD\n";
        let (_, rows) = all(Format::Oiq, text).unwrap();
        assert_eq!(rows[0].attributes["values.instance_type"], "m5.large");
        assert_eq!(rows[0].unit, "Hrs");
        assert_eq!(rows[0].region, "us-east-1");
    }
}
