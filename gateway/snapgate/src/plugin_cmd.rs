//! `snapgate plugin check|eval`: the plugin author's loop, in the exact production runtime.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use snapgate_core::ports::PolicyInput;
use snapgate_policy::PolicyLimits;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Validate a component against the snapgate:policy contract.
    Check { file: PathBuf },
    /// Run a plugin on a request (JSON) and print its decision, time and logs.
    Eval {
        file: PathBuf,
        /// The request, as JSON (see plugins/examples/).
        #[arg(long)]
        input: PathBuf,
        /// The plugin's configuration, as JSON.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Deadline in milliseconds (as in the gateway config).
        #[arg(long, default_value_t = 5)]
        deadline_ms: u64,
        /// Memory cap in MiB.
        #[arg(long, default_value_t = 16)]
        memory_mib: usize,
    },
}

pub fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    match cmd {
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
            deadline_ms,
            memory_mib,
        } => {
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("cannot read {}", input.display()))?;
            let request: PolicyInput = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a request", input.display()))?;
            let config = match config {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
                None => "{}".to_owned(),
            };
            let limits = PolicyLimits {
                deadline: Duration::from_millis(deadline_ms),
                memory_bytes: memory_mib << 20,
                cache_dir: None,
                ..PolicyLimits::default()
            };
            let report = snapgate_policy::eval_once(&file, &request, &config, limits)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
