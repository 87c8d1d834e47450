//! One module per area of the command line.

mod broker;
mod cluster;
mod consume;
mod group;
mod partition;
mod produce;
mod rebalance;
mod template;
mod topic;
mod txn;

use crate::args::Command;
use crate::error::Result;
use crate::Context;

/// Runs a command; the result is the exit code.
pub async fn run(context: &mut Context, command: Command) -> Result<i32> {
    match command {
        Command::Cluster(c) => cluster::run(context, c).await,
        Command::Topic(c) => topic::run(context, c).await,
        Command::Group(c) => group::run(context, c).await,
        Command::Partition(c) => partition::run(context, c).await,
        Command::Txn(c) => txn::run(context, c).await,
        Command::Rebalance(args) => rebalance::run(context, args).await,
        Command::Broker(c) => broker::run(context, c).await,
        Command::Completion { .. } => unreachable!("handled before connecting"),
    }
}
