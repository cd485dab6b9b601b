fn main() -> anyhow::Result<()> {
    signaling::cli::Args::parse_and_run()
}
