#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ice_config::cli::Args::parse_and_run().await
}
