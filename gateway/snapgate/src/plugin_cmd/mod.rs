//! `snapgate plugin new|check|eval|test|schema`: the plugin author's loop, in the exact
//! production runtime.

mod cases;
mod new;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use snapgate_policy::json::Request;
use snapgate_policy::PolicyLimits;

/// `plugin eval` exits with these; `plugin test` uses 0, 1 (a case did not match) and 2.
const EXIT_DENY: u8 = 1;
const EXIT_ERROR: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Write a standalone plugin crate NAME/ (its own Cargo.toml, the SDK and the WIT vendored
    /// in, a unit test, test cases) that builds anywhere with
    /// `cargo build --release --target wasm32-wasip2`.
    New {
        /// The crate's name: lowercase letters, digits, `-` and `_`, starting with a letter.
        name: String,
        /// Where to create NAME/ (default: the current directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Validate a component against the snapgate:policy contract (any version the gateway
    /// binds) and list its imports.
    Check { file: PathBuf },
    /// Run a plugin on one request and print its decision, time and logs. Exits 0 on allow, 1
    /// on deny, 2 on an error (a trap, the deadline, the memory cap, a bad answer, or bad
    /// input).
    Eval {
        file: PathBuf,
        /// The request: the contract's `request` as JSON, the WIT's names (`snapgate plugin
        /// schema` prints its JSON Schema; see plugins/examples/).
        #[arg(long)]
        input: PathBuf,
        /// The plugin's configuration: inline JSON (`'{"max": 2}'`) or `@FILE`. Overrides the
        /// input's `config`.
        #[arg(long)]
        config: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Run a file of cases (request, config, expected verdict and code) against a plugin.
    /// Prints each case; exits 0 when all match, 1 when one does not, 2 on bad input.
    Test {
        /// The cases, JSON (see docs/PLUGINS.md, "Testing a policy").
        cases: PathBuf,
        /// The plugin; default: the cases file's `plugin` (relative to the cases file).
        #[arg(long)]
        plugin: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Print the JSON Schema of the request `eval` and `test` take.
    Schema,
}

/// The limits a plugin runs under, as in the gateway's `[policy]`.
#[derive(Debug, Clone, Copy, Args)]
pub struct LimitArgs {
    /// Deadline of one evaluation in milliseconds (`policy.deadline_ms`).
    #[arg(long, default_value_t = 5)]
    deadline_ms: u64,
    /// Memory cap in MiB (`policy.memory_mib`).
    #[arg(long, default_value_t = 16)]
    memory_mib: usize,
}

impl LimitArgs {
    fn limits(self) -> PolicyLimits {
        PolicyLimits {
            deadline: Duration::from_millis(self.deadline_ms),
            memory_bytes: self.memory_mib << 20,
            cache_dir: None,
            ..PolicyLimits::default()
        }
    }
}

pub fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginCommand::New { name, dir } => new::run(&name, dir.as_deref()),
        PluginCommand::Check { file } => {
            let info = snapgate_policy::check_component(&file)
                .with_context(|| format!("{} is not a valid plugin", file.display()))?;
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Eval {
            file,
            input,
            config,
            limits,
        } => Ok(errors_exit_2(eval(
            &file,
            &input,
            config.as_deref(),
            limits,
        ))),
        PluginCommand::Test {
            cases,
            plugin,
            limits,
        } => Ok(errors_exit_2(cases::run(&cases, plugin.as_deref(), limits))),
        PluginCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&snapgate_policy::json::request_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Exit 2 on any error, so that 1 always means a verdict (deny, a failed case).
fn errors_exit_2(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(EXIT_ERROR)
    })
}

fn eval(
    file: &Path,
    input: &Path,
    config: Option<&str>,
    limits: LimitArgs,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read {}", input.display()))?;
    let request: Request = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a request (`snapgate plugin schema` prints its shape)",
            input.display()
        )
    })?;
    let config = match config {
        Some(arg) => config_arg(arg, Path::new("."))?,
        None => request.config.clone(),
    };
    let report = snapgate_policy::eval_once(file, &request, &config, limits.limits())?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(match report.outcome.as_str() {
        "allow" => ExitCode::SUCCESS,
        "deny" => ExitCode::from(EXIT_DENY),
        _ => ExitCode::from(EXIT_ERROR),
    })
}

/// A configuration given as inline JSON or `@FILE` (relative to `base`), checked to be JSON.
fn config_arg(arg: &str, base: &Path) -> anyhow::Result<String> {
    let text = match arg.strip_prefix('@') {
        Some(file) => {
            let path = base.join(file);
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the config file {}", path.display()))?
        }
        None => arg.to_owned(),
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .with_context(|| format!("the plugin config is not JSON: {text}"))?;
    Ok(text)
}
