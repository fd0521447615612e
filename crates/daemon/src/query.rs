//! A request's query string, read as docker's daemon reads it.

use crate::error::ApiError;

#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key` (Go's `Form.Get`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order (`t=a&t=b`).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Docker's `BoolValue`: set and not "", "0", "no", "false" or
    /// "none" (any case).
    pub fn bool(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| {
            !matches!(
                v.to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            )
        })
    }

    /// An integer value; absent or empty is None.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {key}: {v:?} is not an integer"))
            }),
        }
    }

    /// The `filters` parameter (JSON), or none.
    pub fn filters(&self) -> Result<berth_service::Filters, ApiError> {
        match self.get("filters") {
            None | Some("") => Ok(berth_service::Filters::default()),
            Some(f) => Ok(berth_service::Filters::from_json(f)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_dockers_daemon_reads_them() {
        let q = Query::parse(Some("all=1&t=a&t=b%3A1&force=False&limit=&v=yes&n=x"));
        assert!(q.bool("all"));
        assert!(!q.bool("force"));
        assert!(!q.bool("missing"));
        assert!(q.bool("v"));
        assert_eq!(q.all("t"), ["a", "b:1"]);
        assert_eq!(q.int("limit").unwrap(), None);
        assert_eq!(q.int("n").unwrap_err().status, 400);
        let f = Query::parse(Some("filters=%7B%22status%22%3A%5B%22exited%22%5D%7D"))
            .filters()
            .unwrap();
        assert_eq!(f.iter().next().unwrap().0, "status");
        assert_eq!(
            Query::parse(Some("filters=%7Bnot-json"))
                .filters()
                .unwrap_err()
                .status,
            400
        );
    }
}
