#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gateway::cli::Args::parse_and_run().await
}
