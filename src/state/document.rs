//! What Terrace reads from a state body: only the top-level `serial` and `lineage`.
//!
//! Bodies are stored as sent. A JSON object without those fields (OpenTofu's client-side
//! encrypted state) is opaque and accepted. Bodies are read as they arrive by an incremental
//! parser that stops once it has both fields: Terraform writes them first, so reading a
//! state of any size costs a few hundred bytes of parsing. When they come late (or never),
//! the parser reads on to the end, still without keeping the document.

use actson::feeder::PushJsonFeeder;
use actson::options::JsonParserOptionsBuilder;
use actson::{JsonEvent, JsonParser};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Metadata of a state body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateMeta {
    pub serial: Option<i64>,
    pub lineage: Option<String>,
}

/// Nesting deeper than this is refused (the parser keeps one byte per level).
const MAX_DEPTH: usize = 512;

/// Reads a state body's metadata as its chunks arrive.
pub struct Inspector {
    parser: JsonParser<PushJsonFeeder>,
    depth: usize,
    started: bool,
    /// The top-level field whose value comes next, if it is one we read.
    field: Option<Field>,
    serial: Option<Option<i64>>,
    lineage: Option<Option<String>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Serial,
    Lineage,
    Other,
}

impl Default for Inspector {
    fn default() -> Self {
        Self::new()
    }
}

impl Inspector {
    pub fn new() -> Self {
        let options = JsonParserOptionsBuilder::default()
            .with_max_depth(MAX_DEPTH)
            .build();
        Inspector {
            parser: JsonParser::new_with_options(PushJsonFeeder::new(), options),
            depth: 0,
            started: false,
            field: None,
            serial: None,
            lineage: None,
        }
    }

    /// Whether both fields have been read: nothing after them is looked at.
    pub fn is_done(&self) -> bool {
        self.serial.is_some() && self.lineage.is_some()
    }

    /// Reads the next chunk of the body.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<()> {
        if !self.started {
            chunk = chunk.trim_ascii_start();
            match chunk.first() {
                None => return Ok(()),
                // A state is always an object; an array or scalar is refused outright.
                Some(b'{') => self.started = true,
                Some(_) => return Err(Error::invalid("state must be a JSON object")),
            }
        }
        while !chunk.is_empty() && !self.is_done() {
            let pushed = self.parser.feeder.push_bytes(chunk);
            chunk = &chunk[pushed..];
            self.drain()?;
        }
        Ok(())
    }

    /// After the last chunk: the metadata, or why the body is refused.
    pub fn finish(mut self) -> Result<StateMeta> {
        if !self.started {
            return Err(Error::invalid("state body is empty"));
        }
        if !self.is_done() {
            self.parser.feeder.done();
            self.drain()?;
        }
        Ok(StateMeta {
            serial: self.serial.flatten(),
            lineage: self.lineage.flatten(),
        })
    }

    /// Handles events until the parser needs more input (or the document ends).
    fn drain(&mut self) -> Result<()> {
        while !self.is_done() {
            let event = self
                .parser
                .next_event()
                .map_err(|e| Error::invalid(format!("state is not a valid JSON object: {e}")))?;
            let Some(event) = event else {
                return Ok(());
            };
            match event {
                JsonEvent::NeedMoreInput => return Ok(()),
                JsonEvent::FieldName if self.depth == 1 => {
                    let field = match self.parser.current_str() {
                        Ok("serial") => Field::Serial,
                        Ok("lineage") => Field::Lineage,
                        _ => Field::Other,
                    };
                    let seen = match field {
                        Field::Serial => self.serial.is_some(),
                        Field::Lineage => self.lineage.is_some(),
                        Field::Other => false,
                    };
                    if seen {
                        return Err(Error::invalid("state has a duplicate serial or lineage"));
                    }
                    self.field = Some(field);
                }
                JsonEvent::StartObject | JsonEvent::StartArray => {
                    self.value(event)?;
                    self.depth += 1;
                }
                JsonEvent::EndObject | JsonEvent::EndArray => {
                    self.depth = self.depth.saturating_sub(1);
                }
                JsonEvent::FieldName => {}
                _ => self.value(event)?,
            }
        }
        Ok(())
    }

    /// A value starts: if it is a top-level field's, and one we read, take it.
    fn value(&mut self, event: JsonEvent) -> Result<()> {
        if self.depth != 1 {
            return Ok(());
        }
        match self.field.take() {
            Some(Field::Serial) => {
                let serial = match event {
                    JsonEvent::ValueNull => None,
                    JsonEvent::ValueInt => Some(
                        self.parser
                            .current_int::<i64>()
                            .ok()
                            .filter(|n| *n >= 0)
                            .ok_or_else(serial_error)?,
                    ),
                    _ => return Err(serial_error()),
                };
                self.serial = Some(serial);
            }
            Some(Field::Lineage) => {
                let lineage = match event {
                    JsonEvent::ValueNull => None,
                    JsonEvent::ValueString => match self.parser.current_str() {
                        Ok(s) if s.len() <= 256 => Some(s.to_string()),
                        _ => return Err(lineage_error()),
                    },
                    _ => return Err(lineage_error()),
                };
                self.lineage = Some(lineage);
            }
            Some(Field::Other) | None => {}
        }
        Ok(())
    }
}

fn serial_error() -> Error {
    Error::invalid("state serial must be a non-negative integer")
}

fn lineage_error() -> Error {
    Error::invalid("state lineage must be a string")
}

/// Reads the metadata of a whole state body; refuses anything that is not a JSON object.
pub fn inspect(body: &[u8]) -> Result<StateMeta> {
    let mut inspector = Inspector::new();
    inspector.feed(body)?;
    inspector.finish()
}

/// The same document with its top-level serial replaced, pretty-printed as Terraform writes it.
pub fn with_serial(body: &[u8], serial: i64) -> Result<Vec<u8>> {
    // Stored bodies were only checked up to their header; one may hold JSON a rewrite cannot
    // represent (e.g. a number beyond f64), which is the caller's to hear about, not a fault.
    let unrewritable = |why: String| {
        Error::Conflict(format!(
            "this version cannot be rewritten with a new serial: {why}"
        ))
    };
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| unrewritable(e.to_string()))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| unrewritable("it is not a JSON object".into()))?;
    object.insert("serial".into(), serial.into());
    let mut out = serde_json::to_vec_pretty(&value).map_err(|e| Error::Internal(e.into()))?;
    out.push(b'\n');
    Ok(out)
}

/// The state as an outputs-only reader sees it: the same document with every resource (and
/// whatever else may hold secrets) removed. `None` when the body is not a Terraform state
/// (e.g. client-side encrypted), since its outputs cannot be told apart.
pub fn outputs_only(body: &[u8]) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Outputs {
        version: serde_json::Value,
        #[serde(default)]
        terraform_version: Option<serde_json::Value>,
        serial: serde_json::Value,
        lineage: serde_json::Value,
        outputs: serde_json::Value,
    }
    let state: Outputs = serde_json::from_slice(body).ok()?;
    let filtered = serde_json::json!({
        "version": state.version,
        "terraform_version": state.terraform_version,
        "serial": state.serial,
        "lineage": state.lineage,
        "outputs": state.outputs,
        "resources": [],
    });
    let mut out = serde_json::to_vec_pretty(&filtered).ok()?;
    out.push(b'\n');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_only_keeps_outputs_and_drops_resources() {
        let body = br#"{"version":4,"terraform_version":"1.0.3","serial":7,"lineage":"l",
            "outputs":{"vpc":{"value":"vpc-1","type":"string"}},
            "resources":[{"type":"aws_db_instance","instances":[{"attributes":{"password":"hunter2"}}]}]}"#;
        let filtered = String::from_utf8(outputs_only(body).unwrap()).unwrap();
        assert!(filtered.contains("vpc-1"));
        assert!(!filtered.contains("hunter2"));
        assert!(!filtered.contains("aws_db_instance"));
        let meta = inspect(filtered.as_bytes()).unwrap();
        assert_eq!(meta.serial, Some(7));
        assert!(outputs_only(br#"{"encrypted_data":"AAAA"}"#).is_none());
    }

    #[test]
    fn terraform_state_yields_serial_and_lineage() {
        let meta = inspect(br#"{"version":4,"serial":3,"lineage":"abc","outputs":{}}"#).unwrap();
        assert_eq!(meta.serial, Some(3));
        assert_eq!(meta.lineage.as_deref(), Some("abc"));
    }

    #[test]
    fn encrypted_envelopes_are_opaque() {
        let meta =
            inspect(br#"{"meta":{},"encrypted_data":"AAAA","encryption_version":"v0"}"#).unwrap();
        assert_eq!(meta, StateMeta::default());
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"{"[..],
            b"[1,2]",
            b"[]",
            br#"[3, "lineage"]"#,
            b"",
            b"  ",
            br#"{"serial":-1}"#,
            br#"{"serial":"7"}"#,
        ] {
            assert!(inspect(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    fn inspect_in_pieces(body: &[u8], piece: usize) -> Result<StateMeta> {
        let mut inspector = Inspector::new();
        for chunk in body.chunks(piece) {
            inspector.feed(chunk)?;
        }
        inspector.finish()
    }

    #[test]
    fn pieces_of_any_size_read_the_same() {
        let bodies: [&[u8]; 5] = [
            br#"  {"version":4,"serial":12,"lineage":"abc","outputs":{"a":{"value":[1,{"serial":"x"}]}}}"#,
            br#"{"resources":[{"lineage":5}],"outputs":{},"lineage":"late","serial":3}"#,
            br#"{"meta":{},"encrypted_data":"AAAA","encryption_version":"v0"}"#,
            br#"{"serial":null,"lineage":null}"#,
            br#"{"serial":9223372036854775807,"lineage":"x"}"#,
        ];
        for body in bodies {
            let whole = inspect(body).unwrap();
            for piece in [1, 2, 5, 64] {
                assert_eq!(inspect_in_pieces(body, piece).unwrap(), whole);
            }
        }
        assert_eq!(inspect(bodies[1]).unwrap().serial, Some(3));
    }

    #[test]
    fn reading_stops_after_the_header() {
        let mut inspector = Inspector::new();
        inspector
            .feed(br#"{"version":4,"serial":1,"lineage":"l","resources":["#)
            .unwrap();
        assert!(inspector.is_done());
        // Whatever follows is stored as sent, not parsed.
        inspector.feed(b"\xff not json").unwrap();
        assert_eq!(inspector.finish().unwrap().serial, Some(1));
    }

    #[test]
    fn bad_headers_deep_nesting_and_duplicates_are_refused() {
        for bad in [
            &br#"{"serial":1.0,"lineage":"l"}"#[..],
            br#"{"serial":{},"lineage":"l"}"#,
            br#"{"serial":99999999999999999999,"lineage":"l"}"#,
            br#"{"serial":1,"serial":2}"#,
            br#"{"lineage":7,"serial":1}"#,
            br#"{"a":1}}"#,
            br#"{"a":1} {"#,
        ] {
            assert!(inspect(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{{\"a\":{}", "[".repeat(100_000));
        assert!(inspect(deep.as_bytes()).is_err());
        let long = format!(r#"{{"serial":1,"lineage":"{}"}}"#, "x".repeat(300));
        assert!(inspect(long.as_bytes()).is_err());
    }

    #[test]
    fn with_serial_keeps_field_order() {
        let out = with_serial(br#"{"version":4,"serial":3,"lineage":"abc"}"#, 9).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("{\n  \"version\": 4,\n  \"serial\": 9,"));
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn with_serial_refuses_what_it_cannot_represent() {
        let body = br#"{"version":4,"serial":3,"lineage":"abc","resources":[{"n":1e400}]}"#;
        assert!(inspect(body).is_ok());
        assert!(matches!(with_serial(body, 4), Err(Error::Conflict(_))));
    }
}
