//! `snapgate`: the gateway (`serve`, `migrate`), the seed's CLI (`state-*`), and the plugin
//! author's loop (`plugin check|eval`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use snapgate::cli::{self, client::Client, OutputFormat, StateCommand};
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
    /// How to print the answer: a table (people), or the API's records as JSON or YAML.
    #[arg(
        long,
        short,
        value_enum,
        env = "SNAPGATE_OUTPUT",
        default_value_t = OutputFormat::Table,
        global = true
    )]
    output: OutputFormat,
    /// The same as `--output json`.
    #[arg(long, global = true)]
    json: bool,
}

impl ClientArgs {
    fn format(&self) -> OutputFormat {
        if self.json {
            OutputFormat::Json
        } else {
            self.output
        }
    }
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Listen on this address (`IP:PORT`), over `listen` from the file or the environment.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Check the configuration, database, Redis, every host, authentication and plugins; one
    /// line per check with what to do about each failure. Exit status 1 on any failure.
    Doctor {
        #[command(flatten)]
        server: ServerArgs,
        /// One JSON array of checks (`check`, `status`: ok|warn|fail, `detail`, `hint`).
        #[arg(long)]
        json: bool,
    },
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
    /// Show saved state <state-uuid> of instance <instance-uuid>.
    StateShow {
        instance: Uuid,
        state: Uuid,
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
    /// Cancel running save <operation-uuid> (its state is removed, its quota returned); waits
    /// until it has ended unless --no-wait.
    OperationCancel {
        operation: Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to standard output.
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (snapgate.1 and one per command, roff) into DIR; the package
    /// installs them.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
    /// Change the name, description or expiry of state <state-uuid> of instance <instance-uuid>.
    StateUpdate {
        instance: Uuid,
        state: Uuid,
        #[arg(long)]
        name: Option<String>,
        /// A new description; `--description ""` leaves an empty one, `--clear-description`
        /// removes it.
        #[arg(long, conflicts_with = "clear_description")]
        description: Option<String>,
        #[arg(long)]
        clear_description: bool,
        /// When the state is deleted (RFC 3339, e.g. 2027-01-31T00:00:00Z), or `never`.
        #[arg(long)]
        expires_at: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Schedules of saves: create, list, show, update, delete.
    Schedule {
        #[command(subcommand)]
        command: cli::schedules::ScheduleCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Webhooks (the tenant's events POSTed to a URL): create, list, show, delete.
    Webhook {
        #[command(subcommand)]
        command: cli::webhooks::WebhookCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow the event log (saves, applies, deletes, failures, expiries, schedule runs,
    /// refusals): one line per event, or one JSON object per line with `-o json`. Reconnects
    /// after a dropped connection without missing or repeating an event.
    Events {
        /// Only these kinds (comma-separated, e.g. state.saved,state.failed).
        #[arg(long = "type", value_delimiter = ',')]
        kinds: Vec<String>,
        /// Only events about this instance.
        #[arg(long)]
        instance: Option<Uuid>,
        /// One tenant's events (the cloud operator only; a tenant always reads its own).
        #[arg(long)]
        tenant: Option<String>,
        /// Start after this event seq (0: every event kept); default: new events only.
        #[arg(long)]
        after: Option<i64>,
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
            let mut config = Config::load(args.server.config.as_deref())?;
            if let Some(listen) = args.listen {
                config.listen = listen;
            }
            snapgate::telemetry::init_logs(&config.log);
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let gateway = snapgate::serve::build(config, args.server.config.clone()).await?;
            gateway.serve(listener).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { server, json } => {
            Ok(snapgate::doctor::run(server.config.as_deref(), json).await)
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
        Command::StateShow {
            instance,
            state: s,
            client,
        } => state(client, StateCommand::Show { instance, state: s }).await,
        Command::StateDelete {
            instance,
            states,
            client,
        } => state(client, StateCommand::Delete { instance, states }).await,
        Command::StateUpdate {
            instance,
            state: s,
            name,
            description,
            clear_description,
            expires_at,
            client,
        } => {
            let description = match (description, clear_description) {
                (_, true) => Some(None),
                (Some(d), false) => Some(Some(d)),
                (None, false) => None,
            };
            let expires_at = expires_at.map(|e| (e != "never").then_some(e));
            state(
                client,
                StateCommand::Update {
                    instance,
                    state: s,
                    name,
                    description,
                    expires_at,
                },
            )
            .await
        }
        Command::Schedule { command, client } => schedule(client, command).await,
        Command::Webhook { command, client } => {
            let c = Client::new(&client.url, token_of(&client)?);
            let result = cli::webhooks::run(&c, command, client.format()).await;
            // No instance: the hints of webhook errors name none.
            Ok(report(result, client.format(), Uuid::nil()))
        }
        Command::Events {
            kinds,
            instance,
            tenant,
            after,
            client: args,
        } => {
            let client = Client::new(&args.url, token_of(&args)?);
            let cmd = cli::events::EventsCommand {
                kinds,
                instance,
                tenant,
                after,
            };
            let result = cli::events::run(&client, cmd, args.format()).await;
            Ok(report(result, args.format(), instance.unwrap_or_default()))
        }
        Command::OperationCancel { operation, client } => {
            let args = client;
            let client = Client::new(&args.url, token_of(&args)?);
            let result =
                cli::operations::cancel(&client, operation, !args.no_wait, args.format()).await;
            Ok(report(result, args.format(), Uuid::nil()))
        }
        Command::Plugin(cmd) => snapgate::plugin_cmd::run(cmd),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "snapgate",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpages { dir } => {
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn schedule(
    args: ClientArgs,
    cmd: cli::schedules::ScheduleCommand,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.url, token_of(&args)?);
    let instance = cmd.instance();
    let result = cli::schedules::run(&client, cmd, args.format()).await;
    Ok(report(result, args.format(), instance))
}

async fn state(args: ClientArgs, cmd: StateCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.url, token_of(&args)?);
    let instance = cmd.instance();
    let result = cli::run(&client, cmd, !args.no_wait, args.format()).await;
    Ok(report(result, args.format(), instance))
}

fn token_of(args: &ClientArgs) -> anyhow::Result<Option<String>> {
    Ok(match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read token file {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    })
}

/// The exit code of a client command. An error goes to standard error as `error: <message>
/// (<code>, HTTP <status>)` and, when the CLI knows what to do about it, `hint: …`; with
/// `--output json|yaml` the API's error record is printed on standard output too.
fn report(
    result: Result<(), cli::client::ClientError>,
    format: OutputFormat,
    instance: Uuid,
) -> ExitCode {
    let Err(e) = result else {
        return ExitCode::SUCCESS;
    };
    if let (true, Some(body)) = (format.is_machine(), e.body()) {
        if let Ok(text) = format.render(body) {
            print!("{text}");
        }
    }
    eprintln!("error: {e}");
    if let Some(hint) = e.hint(Some(&instance)) {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(1)
}
