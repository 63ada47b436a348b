//! The DMP in GakuNin RDM's shape: the common metadata items, each with its number and its
//! label written as GakuNin RDM writes its bilingual labels (`日本語|English`).
//!
//! Only the common metadata items (1–24) go here: AMED's own entries (management category,
//! restricted-sharing period, consent, data-providing institution) are not among them and
//! travel in our own JSON. The research notes name the schema (`e-rad-metadata-1`) but not its
//! question identifiers, so items are keyed by their number and our field name.

use serde_json::{Value, json};

use super::Dmp;
use super::fields::{FIELDS, Label};

/// The schema GakuNin RDM's common-items metadata conforms to.
pub const SCHEMA: &str = "e-rad-metadata-1";

fn bilingual(l: Label) -> String {
    format!("{}|{}", l.ja, l.en)
}

/// The DMP as GakuNin RDM metadata: `{"schema", "items": [{"item", "key", "label", "value"}]}`,
/// in the order of the items; absent optional items are left out.
pub fn to_gakunin(dmp: &Dmp) -> Value {
    let own = serde_json::to_value(dmp).unwrap_or_default();
    let mut items = Vec::new();
    for f in FIELDS {
        let Some(item) = f.item else { continue };
        if f.key.contains('.') || f.key.contains("[]") {
            // Parts of a field go out with the field itself.
            continue;
        }
        let Some(v) = own.get(f.key) else { continue };
        let value = match f.key {
            "access_rights" => Value::String(bilingual(dmp.access_rights.label())),
            "data_manager_contact" => parts(f.key, v),
            "creators" => Value::Array(
                v.as_array()
                    .map(|a| a.iter().map(|c| parts("creators[]", c)).collect())
                    .unwrap_or_default(),
            ),
            _ => v.clone(),
        };
        items.push(json!({
            "item": item,
            "key": f.key,
            "label": bilingual(f.label),
            "value": value,
        }));
    }
    json!({ "schema": SCHEMA, "items": items })
}

/// An object's parts, each with its label.
fn parts(prefix: &str, v: &Value) -> Value {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    Value::Array(
        obj.iter()
            .map(|(k, v)| {
                let key = format!("{prefix}.{k}");
                let label = FIELDS
                    .iter()
                    .find(|f| f.key == key)
                    .map(|f| bilingual(f.label))
                    .unwrap_or_else(|| k.clone());
                json!({ "key": k, "label": label, "value": v })
            })
            .collect(),
    )
}
