//! berth's engine service: what a Docker front end asks of the engine,
//! typed. Requests and responses have Docker's JSON shape (the Engine API's
//! field names), errors carry a kind that maps to a CLI exit code and to an
//! HTTP status, and every Docker decision (filters, status wording, views,
//! pull policy) is made here, once, for the CLI and the daemon alike.
//! Front ends parse and render; nothing here prints.

pub mod build;
pub mod containers;
pub mod create;
pub mod error;
pub mod events;
pub mod exec;
pub mod filters;
pub mod images;
pub mod objects;
pub mod pull;
pub mod system;
pub mod units;
pub mod volumes;

pub use error::{Error, ErrorKind};
pub use filters::Filters;

pub type Result<T, E = Error> = std::result::Result<T, E>;
