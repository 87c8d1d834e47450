//! `tideline`: one command-line tool for the people who run Tideline (and
//! any Kafka cluster). Subcommands live in `commands/`, one module per
//! area; they talk to the cluster through `admin/` (Kafka requests framed
//! by the protocol crate) or, for produce and consume, through librdkafka.

mod admin;
mod args;
mod commands;
mod error;
mod output;
mod properties;

use std::io::{BufRead, IsTerminal, Write};

use clap::{CommandFactory, Parser};

use crate::admin::Admin;
use crate::args::{Cli, Command};
use crate::error::{CliError, Result};
use crate::output::Format;
use crate::properties::ClientOptions;

/// What every command gets: the parsed options and, on first use, a
/// connection to the cluster.
pub struct Context {
    pub options: ClientOptions,
    pub format: Format,
    yes: bool,
    admin: Option<Admin>,
}

impl Context {
    pub async fn admin(&mut self) -> Result<&mut Admin> {
        if self.admin.is_none() {
            self.admin = Some(Admin::connect(self.options.clone()).await?);
        }
        Ok(self.admin.as_mut().expect("connected above"))
    }

    /// Drops the connections, so the next request connects again (after a
    /// broker went away while waiting).
    pub fn reconnect(&mut self) {
        self.admin = None;
    }

    /// Asks before a destructive step when a person is at the keyboard;
    /// scripts (stdin not a terminal) and `--yes` go ahead.
    pub fn confirm(&self, what: &str) -> Result<()> {
        if self.yes || !std::io::stdin().is_terminal() {
            return Ok(());
        }
        eprint!("{what}? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
            Ok(())
        } else {
            Err(CliError::usage(
                "not confirmed; nothing was changed",
                "answer y, or pass --yes",
            ))
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<i32> {
    if let Command::Completion { shell } = cli.command {
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "tideline", &mut std::io::stdout());
        return Ok(error::EXIT_OK);
    }
    let mut context = Context {
        options: ClientOptions::parse(&cli.brokers, &cli.properties)?,
        format: Format::parse(&cli.format),
        yes: cli.yes,
        admin: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CliError::failed(format!("cannot start: {e}"), "check the machine's limits")
        })?;
    runtime.block_on(commands::run(&mut context, cli.command))
}
