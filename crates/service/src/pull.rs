//! When an image is pulled before it is used (`--pull`, compose's
//! `pull_policy`, the API's create then pull).

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull when the store does not have the image (docker's default).
    #[default]
    Missing,
    /// Never pull: a missing image is an error.
    Never,
    /// Pull every time, even when the store has the image.
    Always,
}

impl std::str::FromStr for PullPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<PullPolicy> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "never" => Ok(PullPolicy::Never),
            "always" => Ok(PullPolicy::Always),
            _ => Err(Error::invalid(format!(
                "invalid pull option: {s:?}: must be one of \"always\", \"missing\" or \"never\""
            ))),
        }
    }
}
