//! `inspect` of any object: containers first, then images, then volumes
//! (or only the kind asked for), as docker looks them up.

use berth_engine::Engine;
use serde_json::Value;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Container,
    Image,
    Volume,
}

impl std::str::FromStr for ObjectKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<ObjectKind> {
        match s {
            "container" => Ok(ObjectKind::Container),
            "image" => Ok(ObjectKind::Image),
            "volume" => Ok(ObjectKind::Volume),
            _ => Err(Error::invalid(format!(
                "{s:?} is not a valid value for --type: use container, image or volume"
            ))),
        }
    }
}

/// The inspect view of the object `name` names.
pub fn inspect(eng: &mut Engine, name: &str, kind: Option<ObjectKind>) -> Result<Value> {
    let want = |k: ObjectKind| kind.is_none_or(|x| x == k);
    let to_value = |v: serde_json::Result<Value>| {
        v.map_err(|e| Error::new(crate::ErrorKind::Internal, e.to_string()))
    };
    if want(ObjectKind::Container) {
        if let Ok(r) = eng.get(name) {
            return to_value(serde_json::to_value(crate::containers::inspect(eng, &r)));
        }
    }
    if want(ObjectKind::Image) {
        if let Ok(img) = eng.store.resolve(name) {
            return Ok(berth_image::inspect::inspect(&eng.store, &img)?);
        }
    }
    if want(ObjectKind::Volume) {
        if let Some(v) = eng.volumes().get(name)? {
            return to_value(serde_json::to_value(crate::volumes::view(eng, &v)));
        }
    }
    Err(Error::not_found(format!("No such object: {name}")))
}
