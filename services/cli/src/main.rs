//! `touchpoint`: the local stack and the operator's commands.
//!
//! - `touchpoint up [--no-demo] [--keep] [--days N]`: start a broker (unless
//!   `KAFKA_BROKERS` is set), the provider sandbox and the four services as
//!   separate processes, wait until each reports healthy, run the demo on an
//!   accelerated clock (see [`demo`]) and stop everything; with `--no-demo` or
//!   `--keep`, stay up until Ctrl-C.
//! - `touchpoint health [ADDR...]`: the gRPC health of running services.
//! - `touchpoint programs validate [DIR]`: check program files (default `programs`)
//!   and list every problem; exits 1 if there is any.

mod health;
mod programs;
mod stack;

use anyhow::bail;

const USAGE: &str = "usage: touchpoint up [--no-demo] [--keep] [--days N] | touchpoint health [HOST:PORT ...] | touchpoint programs validate [DIR]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") => stack::up(stack::UpOptions::parse(&args[1..])?).await,
        Some("health") => health::report(&args[1..]).await,
        Some("programs") if args.get(1).map(String::as_str) == Some("validate") => {
            programs::validate(args.get(2).map_or("programs", String::as_str))
        }
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n{USAGE}"),
    }
}
