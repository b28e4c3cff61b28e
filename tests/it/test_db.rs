//! A database per test, on either backend. SQLite: a file in a temporary
//! folder. PostgreSQL: a database of its own, created through
//! `TUNESERVE_TEST_DATABASE_URL` (whose role may create databases; `.ci/run`
//! sets it, `.ci/postgres.sh` makes one) and dropped when the test ends.
//! Without that variable the PostgreSQL half of each test says so and passes.
//!
//! `on_both_backends!(name, …)` turns each `async fn name(backend: Backend)`
//! into two tests, `name::sqlite` and `name::postgres`: one body, both stores.

use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;
use tuneserve::store::{DatabaseUrl, Store};

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// The variable that names the PostgreSQL tests run against.
pub const DATABASE_VAR: &str = "TUNESERVE_TEST_DATABASE_URL";

/// Whether the PostgreSQL tests can run; says so when they cannot.
pub fn postgres_available() -> bool {
    let set = std::env::var_os(DATABASE_VAR).is_some();
    if !set {
        eprintln!("skipped: {DATABASE_VAR} is not set (.ci/postgres.sh prints one)");
    }
    set
}

/// Defines `NAME::sqlite` and `NAME::postgres` for each `async fn NAME(Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::test_db::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::test_db::postgres_available() {
                    super::$name($crate::test_db::Backend::Postgres).await
                }
            }
        }
    )*};
}
pub(crate) use on_both_backends;

/// A test's database; a PostgreSQL one is dropped with this value.
pub struct TestDb {
    /// Where it is.
    pub url: DatabaseUrl,
    _dir: Option<TempDir>,
    dropped_by: Option<(String, String)>,
}

impl TestDb {
    /// A fresh database on `backend`.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// A SQLite file in a temporary folder.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            url: DatabaseUrl::Sqlite(dir.path().join("t.db")),
            _dir: Some(dir),
            dropped_by: None,
        }
    }

    /// A new PostgreSQL database (panics without [`DATABASE_VAR`] or when
    /// PostgreSQL does not answer).
    pub async fn postgres() -> Self {
        let admin = std::env::var(DATABASE_VAR).expect("TUNESERVE_TEST_DATABASE_URL");
        let name = format!("tuneserve_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("{DATABASE_VAR}: PostgreSQL does not answer: {e}"));
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        Self {
            url: DatabaseUrl::Postgres(with_database(&admin, &name)),
            _dir: None,
            dropped_by: Some((admin, name)),
        }
    }

    /// A store on it (migrated).
    pub async fn store(&self) -> Store {
        Store::connect(&self.url).await.unwrap()
    }

    /// The URL as the command line takes it.
    pub fn url_arg(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => url.clone(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.dropped_by.take() else {
            return;
        };
        // Drop runs outside async code: a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin).await?;
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                conn.execute(sql.as_str()).await?;
                conn.close().await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("dropping the test database: {e}");
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}
