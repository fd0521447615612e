//! Errors as the Engine API gives them: a status code and
//! `{"message": "..."}`.

use berth_service::ErrorKind;

/// An answer that is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, message)
    }

    /// An endpoint the API has and berth does not serve yet.
    pub fn not_implemented(what: &str) -> ApiError {
        ApiError::new(
            501,
            format!("{what} is not implemented by berth daemon yet"),
        )
    }

    /// The body: `{"message": ...}`.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "message": self.message }))
            .expect("a JSON object serializes")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl From<berth_service::Error> for ApiError {
    fn from(e: berth_service::Error) -> ApiError {
        let status = match e.kind() {
            // An engine error in a container's start: docker answers 500
            // with the runtime's words ("executable file not found"),
            // which the CLI maps to 127 and 126.
            ErrorKind::NotExecutable | ErrorKind::CommandNotFound => 500,
            k => k.http_status(),
        };
        // The message with its causes, as docker's daemon words wrapped
        // errors ("outer: inner").
        ApiError::new(status, berth_runtime::container::chain(&e))
    }
}

impl From<berth_engine::EngineError> for ApiError {
    fn from(e: berth_engine::EngineError) -> ApiError {
        berth_service::Error::from(e).into()
    }
}

impl From<berth_image::store::StoreError> for ApiError {
    fn from(e: berth_image::store::StoreError) -> ApiError {
        berth_service::Error::from(e).into()
    }
}

impl From<crate::route::RouteError> for ApiError {
    fn from(e: crate::route::RouteError) -> ApiError {
        let status = match e {
            crate::route::RouteError::NotFound => 404,
            _ => 400,
        };
        ApiError::new(status, e.to_string())
    }
}
