//! A stage's state between steps: its layers, its image config (Docker's
//! `config` object), its history, and what the next steps read from it.

use berth_image::digest::Digest;
use berth_image::store::LayerRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::BuildError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Layer {
    pub blob_digest: String,
    pub media_type: String,
    pub blob_size: u64,
    pub diff_id: String,
    pub chain_id: String,
}

impl Layer {
    pub fn from_record(r: &LayerRecord) -> Layer {
        Layer {
            blob_digest: r.blob_digest.to_string(),
            media_type: r.media_type.clone(),
            blob_size: r.blob_size,
            diff_id: r.diff_id.to_string(),
            chain_id: r.chain_id.to_string(),
        }
    }

    pub fn chain_id(&self) -> Result<Digest, BuildError> {
        parse_digest(&self.chain_id)
    }

    pub fn record(&self) -> Result<LayerRecord, BuildError> {
        Ok(LayerRecord {
            blob_digest: parse_digest(&self.blob_digest)?,
            media_type: self.media_type.clone(),
            blob_size: self.blob_size,
            diff_id: parse_digest(&self.diff_id)?,
            chain_id: parse_digest(&self.chain_id)?,
        })
    }
}

fn parse_digest(s: &str) -> Result<Digest, BuildError> {
    s.parse()
        .map_err(|_| BuildError::Invalid(format!("bad digest in the build cache: {s}")))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct State {
    pub layers: Vec<Layer>,
    /// Docker's `config` object (Env, Cmd, Entrypoint, WorkingDir, ...).
    pub config: Map<String, Value>,
    pub history: Vec<Value>,
    pub architecture: String,
    pub os: String,
    pub author: Option<String>,
    /// CMD was set in this stage (ENTRYPOINT then leaves it alone).
    pub cmd_set: bool,
}

impl State {
    pub fn scratch() -> State {
        let mut config = Map::new();
        config.insert(
            "Env".into(),
            Value::Array(vec![Value::String(format!(
                "PATH={}",
                berth_engine::config::DEFAULT_PATH
            ))]),
        );
        State {
            architecture: "amd64".into(),
            os: "linux".into(),
            config,
            ..State::default()
        }
    }

    pub fn layer_records(&self) -> Result<Vec<LayerRecord>, BuildError> {
        self.layers.iter().map(Layer::record).collect()
    }

    /// The value of ENV variable `k`.
    pub fn env(&self) -> Vec<(String, String)> {
        self.config
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|e| {
                        let (k, v) = e.split_once('=').unwrap_or((e, ""));
                        (k.to_string(), v.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn set_env(&mut self, k: &str, v: &str) {
        let mut env = self.env();
        match env.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        }
        self.config.insert(
            "Env".into(),
            Value::Array(
                env.into_iter()
                    .map(|(k, v)| Value::String(format!("{k}={v}")))
                    .collect(),
            ),
        );
    }

    pub fn str_field(&self, k: &str) -> String {
        self.config
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    /// The SHELL for shell-form commands.
    pub fn shell(&self) -> Vec<String> {
        self.config
            .get("Shell")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .filter(|v: &Vec<String>| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// Inserts into a map field (Labels, ExposedPorts, Volumes).
    pub fn map_insert(&mut self, field: &str, k: &str, v: Value) {
        let m = self
            .config
            .entry(field.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !m.is_object() {
            *m = Value::Object(Map::new());
        }
        m.as_object_mut()
            .expect("made an object")
            .insert(k.to_string(), v);
    }
}
