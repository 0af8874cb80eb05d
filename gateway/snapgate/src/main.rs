//! `snapgate`: the gateway (`serve`, `migrate`), the seed's CLI (`state-*`), and the plugin
//! author's loop (`plugin check|eval`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use snapgate::cli::{self, client::Client, StateCommand};
use snapgate::config::Config;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "snapgate",
    version,
    about = "Live VM states (snapshots with RAM) for multi-tenant clouds"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// TOML configuration file; `SNAPGATE_…` environment variables override it.
    #[arg(long, short, env = "SNAPGATE_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ClientArgs {
    /// The gateway's base URL.
    #[arg(
        long,
        env = "SNAPGATE_URL",
        default_value = "http://127.0.0.1:8774",
        global = true
    )]
    url: String,
    /// Bearer token (or `--token-file`).
    #[arg(long, env = "SNAPGATE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// A file holding the bearer token, e.g. `data/member.token`.
    #[arg(long, env = "SNAPGATE_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Return at once with the operation id instead of waiting for it to end.
    #[arg(long, global = true)]
    no_wait: bool,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServerArgs),
    /// Run pending database migrations and exit.
    Migrate(ServerArgs),
    /// Print the effective configuration (defaults, file, environment) after validation, with
    /// secrets (HS256 secret, URL passwords) shown as `<redacted>`. Every policy plugin is
    /// loaded as at start (file, sha256 pin, contract): one that does not load fails it.
    Config(ServerArgs),
    /// Save instance <instance-uuid> state as <state-name>.
    StateSave {
        instance: Uuid,
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reset instance <instance-uuid> to saved state <state-uuid>.
    StateLoad {
        instance: Uuid,
        state: Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the saved states of instance <instance-uuid>.
    StateList {
        instance: Uuid,
        /// Show only the first page of this size.
        #[arg(long)]
        limit: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete saved states of instance <instance-uuid>.
    StateDelete {
        instance: Uuid,
        #[arg(required = true)]
        states: Vec<Uuid>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Policy plugin tools for authors.
    #[command(subcommand)]
    Plugin(snapgate::plugin_cmd::PluginCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            let config = Config::load(args.config.as_deref())?;
            snapgate::telemetry::init_logs(&config.log);
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let gateway = snapgate::serve::build(config, args.config.clone()).await?;
            gateway.serve(listener).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(args) => {
            let config = Config::load(args.config.as_deref())?;
            snapgate::telemetry::init_logs(&config.log);
            snapgate::serve::open_database(&config).await?;
            println!(
                "migrations applied to {}",
                config.database_url().split('?').next().unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(args) => {
            let config = Config::load(args.config.as_deref())?;
            // Every plugin is loaded as the gateway would load it (file, pin, contract), so a
            // config that passes here does not fail at start.
            let limits = snapgate::serve::policy_limits(&config);
            let plugins = config.policy.plugins.clone();
            let checked = tokio::task::spawn_blocking(move || {
                snapgate_policy::check_chain(&plugins, &limits)
            })
            .await
            .context("the plugin check stopped")?
            .context("policy.plugins")?;
            // Secrets never reach a terminal, a ticket or a log: they print as `<redacted>`.
            println!(
                "{}",
                toml::to_string_pretty(&config.redacted())
                    .context("cannot print the configuration")?
            );
            for p in checked {
                eprintln!(
                    "plugin {}: {} loads (contract {}, sha256 {})",
                    p.name,
                    p.file.display(),
                    p.contract.as_str(),
                    p.sha256
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::StateSave {
            instance,
            name,
            description,
            client,
        } => {
            state(
                client,
                StateCommand::Save {
                    instance,
                    name,
                    description,
                },
            )
            .await
        }
        Command::StateLoad {
            instance,
            state: s,
            client,
        } => state(client, StateCommand::Load { instance, state: s }).await,
        Command::StateList {
            instance,
            limit,
            client,
        } => state(client, StateCommand::List { instance, limit }).await,
        Command::StateDelete {
            instance,
            states,
            client,
        } => state(client, StateCommand::Delete { instance, states }).await,
        Command::Plugin(cmd) => snapgate::plugin_cmd::run(cmd),
    }
}

async fn state(args: ClientArgs, cmd: StateCommand) -> anyhow::Result<ExitCode> {
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read token file {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let client = Client::new(&args.url, token);
    match cli::run(&client, cmd, !args.no_wait, args.json).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            if args.json {
                if let cli::client::ClientError::Api { body, .. } = &e {
                    println!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
                }
            }
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
