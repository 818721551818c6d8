//! Layering settings: a TOML or JSON file, or a JSON overlay (the command line's options), over a
//! configuration; and `config.toml`, a run's own configuration.

use std::path::Path;

use serde::Deserialize;

use super::{OptimizerConfig, OptimizerKind, TrainConfig};
use crate::{config_err, Error, Result};

impl TrainConfig {
    /// Layer a TOML or JSON file (by extension) over `self`: keys present in the file replace ours.
    pub fn with_file(&self, path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let is_json = path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("json"));
        let overlay: serde_json::Value = if is_json {
            serde_json::from_str(&text)
                .map_err(|e| Error::data(path, format!("not valid JSON: {e}")))?
        } else {
            let table: toml::Value = toml::from_str(&text)
                .map_err(|e| Error::data(path, format!("not valid TOML: {e}")))?;
            if let Some((key, v)) = non_finite_float(&table, "") {
                return Err(Error::data(
                    path,
                    format!("`{key}` is {v}; a setting must be a finite number"),
                ));
            }
            serde_json::to_value(&table).map_err(|e| Error::data(path, e.to_string()))?
        };
        self.with_overlay(overlay)
            .map_err(|e| Error::data(path, e.to_string()))
    }

    /// Layer a JSON object of settings over `self`. A `preset` key first replaces the base with that
    /// preset. Setting `iterations` clears `epochs` and the other way round.
    pub fn with_overlay(&self, mut overlay: serde_json::Value) -> Result<Self> {
        let Some(map) = overlay.as_object_mut() else {
            return Err(config_err!("a configuration must be a table of settings"));
        };
        let base = match map.remove("preset") {
            Some(serde_json::Value::String(name)) => Self::preset(&name)?,
            Some(other) => {
                return Err(config_err!(
                    "preset must be a name such as \"paper\", got {other}"
                ))
            }
            None => self.clone(),
        };
        let mut base = base;
        // Another optimizer starts from its own defaults: the keys of one are no settings of the other.
        let kind = map
            .get("optimizer")
            .and_then(|o| o.get("kind"))
            .and_then(|k| OptimizerKind::deserialize(k).ok());
        if let Some(kind) = kind.filter(|&k| k != base.optimizer.kind()) {
            base.optimizer = OptimizerConfig::defaults(kind);
        }
        let mut value = serde_json::to_value(&base).expect("TrainConfig serialises");
        let target = value.as_object_mut().expect("a struct serialises to a map");
        // Null, not absent: an absent key would take the default's value.
        if map.contains_key("iterations") {
            target.insert("epochs".into(), serde_json::Value::Null);
        }
        if map.contains_key("epochs") {
            target.insert("iterations".into(), serde_json::Value::Null);
        }
        merge(&mut value, overlay);
        serde_json::from_value(value).map_err(|e| config_err!("configuration: {e}"))
    }

    /// The configuration as TOML (what `config.toml` in a run directory holds).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("TrainConfig serialises to TOML")
    }

    /// Read a run directory's `config.toml`.
    pub fn load_toml(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text)
            .map_err(|e| Error::data(path, format!("not a rescnn configuration: {e}")))
    }
}

/// Recursive merge: objects merge key by key, anything else replaces.
fn merge(base: &mut serde_json::Value, overlay: serde_json::Value) {
    match (base, overlay) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}
/// The first NaN or infinite float in a TOML value, with its dotted key (TOML has both; JSON,
/// which the settings are layered as, has neither).
fn non_finite_float(v: &toml::Value, key: &str) -> Option<(String, f64)> {
    match v {
        toml::Value::Float(f) if !f.is_finite() => Some((key.to_string(), *f)),
        toml::Value::Table(t) => t.iter().find_map(|(k, v)| {
            let key = if key.is_empty() {
                k.clone()
            } else {
                format!("{key}.{k}")
            };
            non_finite_float(v, &key)
        }),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| non_finite_float(v, &format!("{key}[{i}]"))),
        _ => None,
    }
}
