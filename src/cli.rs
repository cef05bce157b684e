//! The command line: `run` (default), `check [--json]`, `top [--once]`, `config [--json|--markdown]`, and one
//! global flag per setting, generated from the settings table so that flags, environment names and
//! docs/configuration.md cannot disagree.

use crate::config::SETTINGS;
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub enum Action {
    Run,
    Check { json: bool },
    Top { once: bool },
    Config { json: bool, markdown: bool },
}

pub struct Invocation {
    pub action: Action,
    pub config_file: Option<PathBuf>,
    pub flags: BTreeMap<String, String>,
}

fn flag_name(key: &str) -> &'static str {
    Box::leak(key.replace('_', "-").into_boxed_str())
}

pub fn command() -> Command {
    let mut cmd = Command::new("node-agent")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Telemetry agent for game-server and container hosts: node, container and game-server metrics over OTLP")
        .long_about(
            "node-agent measures this node (CPU with iowait, memory, filesystems, disks, network), every \
             container and Pterodactyl game server on it, and exports OpenTelemetry metrics over OTLP.\n\n\
             Every setting can be given as a flag, an environment variable or a key in the TOML file \
             passed with --config; that is also the order of precedence. `node-agent config` shows the \
             value in force and where it came from.",
        )
        .arg(
            Arg::new("config")
                .long("config")
                .short('c')
                .global(true)
                .value_name("FILE")
                .env("NODE_AGENT_CONFIG")
                .help("TOML configuration file (keys as in `node-agent config`)"),
        )
        .subcommand(Command::new("run").about("Run the agent (the default)"))
        .subcommand(
            Command::new("check")
                .about("Sample everything once, test the OTLP endpoint, print a report; exit 1 if something fails")
                .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("Print one JSON document")),
        )
        .subcommand(
            Command::new("top")
                .about("Live view of this node, its containers and game servers in the terminal (q quits); needs no collector")
                .arg(Arg::new("once").long("once").action(ArgAction::SetTrue).help("Print one screen as plain text and exit")),
        )
        .subcommand(
            Command::new("config")
                .about("Print the effective configuration and where each value comes from (secrets redacted)")
                .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("Print JSON"))
                .arg(Arg::new("markdown").long("markdown").action(ArgAction::SetTrue).help("Print the settings table as Markdown (for docs/configuration.md)")),
        );
    for s in SETTINGS {
        cmd = cmd.arg(
            Arg::new(s.key)
                .long(flag_name(s.key))
                .global(true)
                .value_name("VALUE")
                .help_heading("Settings (flag > environment > file > default)")
                .help(format!("{} [env: {}]", s.help, s.env.join(", "))),
        );
    }
    cmd
}

pub fn parse(matches: &ArgMatches) -> Invocation {
    let mut flags = BTreeMap::new();
    for s in SETTINGS {
        if let Some(v) = matches.get_one::<String>(s.key) {
            flags.insert(s.key.to_string(), v.clone());
        }
    }
    let action = match matches.subcommand() {
        Some(("check", m)) => Action::Check {
            json: m.get_flag("json"),
        },
        Some(("top", m)) => Action::Top {
            once: m.get_flag("once"),
        },
        Some(("config", m)) => Action::Config {
            json: m.get_flag("json"),
            markdown: m.get_flag("markdown"),
        },
        _ => Action::Run,
    };
    Invocation {
        action,
        config_file: matches.get_one::<String>("config").map(PathBuf::from),
        flags,
    }
}
