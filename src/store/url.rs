//! `--database-url`: which backend, and where. `sqlite://PATH` (one node; the
//! default is the data folder's `tuneserve.db`) or `postgres://…` (any number
//! of nodes).

use std::path::PathBuf;
use std::str::FromStr;

/// Where the store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file (relative paths are relative to the working directory).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL, as libpq takes it.
    Postgres(String),
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        const EXPECTED: &str =
            "expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE";
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Self::Postgres(s.to_string()));
        }
        let path = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
            .ok_or_else(|| format!("`{}`: {EXPECTED}", redact(s)))?;
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(format!(
                "`{s}`: give a SQLite file (an in-memory database would be one per connection)"
            ));
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// Shown the way [`Display`](std::fmt::Display) shows it: no password.
impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// `url` with the password (between `user:` and `@`) replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_a_password() {
        let pg: DatabaseUrl = "postgres://ts:secret@db:5432/tuneserve".parse().unwrap();
        assert_eq!(pg.to_string(), "postgres://ts:***@db:5432/tuneserve");
        assert!(!format!("{pg:?}").contains("secret"));
        assert_eq!(
            "sqlite:///srv/data/tuneserve.db"
                .parse::<DatabaseUrl>()
                .unwrap(),
            DatabaseUrl::Sqlite("/srv/data/tuneserve.db".into())
        );
        assert_eq!(
            "sqlite://data/t.db?mode=rwc"
                .parse::<DatabaseUrl>()
                .unwrap(),
            DatabaseUrl::Sqlite("data/t.db".into())
        );
        assert!("sqlite::memory:".parse::<DatabaseUrl>().is_err());
        let err = "mysql://u:pw@h/db".parse::<DatabaseUrl>().unwrap_err();
        assert!(err.contains("postgres://") && !err.contains("pw"), "{err}");
    }
}
