//! The shared vector file, read once per test run from `../shared/protocol/vectors.json`.

use serde_json::Value;
use std::sync::OnceLock;

pub fn vectors() -> &'static Value {
    static VECTORS: OnceLock<Value> = OnceLock::new();
    VECTORS.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/protocol/vectors.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).expect("vectors.json is JSON")
    })
}

/// The bytes of a lowercase-hex string value.
pub fn hex(value: &Value) -> Vec<u8> {
    let s = value.as_str().expect("a hex string");
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
        .collect()
}

pub fn key16(value: &Value) -> [u8; 16] {
    hex(value).try_into().expect("16 bytes")
}
