//! `strata-load`: Strata's load generator over HTTP, through the edges as a
//! shopper's browser or a staff tool would call them. Open loops at fixed
//! rates, latencies in HDR histograms counted from when each request was due.
//!
//! - `flood`: a sign-in flood from many addresses, and what it costs catalog
//!   reads (issue "The edges hold…"; `scripts/signin-flood.py` starts the shop
//!   and runs it).
//! - `shop`: shoppers and staff through the edges at a fixed rate, every
//!   request recorded, then the truth read back and the invariants checked.
//! - `capacity`: closed loops at rising concurrency, with what each request
//!   costs every process (`make loadtest`).

mod capacity;
#[path = "../cpu.rs"]
mod cpu;
mod flood;
mod schedule;
mod setup;
mod shop;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "strata-load", about = "Strata's load generator over HTTP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A sign-in flood from many addresses, and catalog reads beside it.
    Flood(flood::Flood),
    /// The whole shop under a steady load, every request recorded, then the
    /// truth read back and checked (nothing lost, nothing duplicated).
    Shop(shop::ShopLoad),
    /// Closed loops at rising concurrency: throughput, latency, and what each
    /// request costs in CPU, gRPC calls and statements.
    Capacity(capacity::Capacity),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Flood(flood) => flood::run(flood).await,
            Command::Shop(load) => shop::run(load).await,
            Command::Capacity(load) => capacity::run(load).await,
        }
    })
}
