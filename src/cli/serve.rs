//! `tuneserve serve`: the HTTP service (see [`crate::api`]). Its flags are
//! [`ServeConfig`]'s fields, defined there once.

use crate::api::{Application, ServeConfig};

/// Runs the service until SIGINT or SIGTERM.
pub fn run(config: ServeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = Application::build(config).await?;
        app.run_until_stopped().await?;
        anyhow::Ok(())
    })
}
