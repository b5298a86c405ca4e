use anyhow::Result;
use clap::Parser;
use datacat_loadgen::{run, Config};

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::parse();
    datacat_service::init_tracing();
    let report = run(&config).await?;
    println!("{report}");
    Ok(())
}
