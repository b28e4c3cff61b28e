//! `tuneserve migrate-store`: moves a deployment's database to another store
//! (a single node's SQLite to PostgreSQL, or back): every row, ids kept,
//! into an empty target, all or nothing. The data folder's files move on
//! their own (paths in the database are relative to it).

use crate::store::{DatabaseUrl, Store};

/// Arguments of `migrate-store`.
#[derive(Debug, clap::Args)]
pub struct MigrateStoreArgs {
    /// The store to copy from (its nodes stopped): `sqlite://PATH` or `postgres://…`.
    #[arg(long)]
    pub from: DatabaseUrl,
    /// The store to copy into (created and migrated if needed; must hold no rows).
    #[arg(long)]
    pub to: DatabaseUrl,
}

/// Copies every table and prints the row counts.
pub fn run(args: MigrateStoreArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.from != args.to, "--from and --to are the same store");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let from = Store::connect(&args.from)
            .await
            .map_err(|e| anyhow::anyhow!("--from {}: {e}", args.from))?;
        let to = Store::connect(&args.to)
            .await
            .map_err(|e| anyhow::anyhow!("--to {}: {e}", args.to))?;
        let copied = from.copy_into(&to).await?;
        for c in &copied {
            println!("{:<12} {:>9} rows", c.table, c.rows);
        }
        println!("copied {} into {}", args.from, args.to);
        from.close().await;
        to.close().await;
        anyhow::Ok(())
    })
}
