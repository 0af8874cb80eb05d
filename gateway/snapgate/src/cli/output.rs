//! `--output json|yaml|table`: the same record, for a script (JSON, YAML) or a person (table).

use serde::Serialize;

use super::client::ClientError;

/// How the client commands print their answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Tables and sentences for people.
    #[default]
    Table,
    /// The API's records as JSON (pretty-printed).
    Json,
    /// The API's records as YAML.
    Yaml,
}

impl OutputFormat {
    /// True for the formats a program reads.
    pub fn is_machine(self) -> bool {
        self != OutputFormat::Table
    }

    /// Prints `record` as JSON or YAML, or `human()` for a table.
    pub fn print<T: Serialize>(
        self,
        record: &T,
        human: impl FnOnce() -> String,
    ) -> Result<(), ClientError> {
        match self {
            OutputFormat::Table => println!("{}", human()),
            _ => print!("{}", self.render(record)?),
        }
        Ok(())
    }

    /// The record as JSON or YAML text, ending with a newline (a table has no generic form:
    /// it is rendered as JSON).
    pub fn render<T: Serialize>(self, record: &T) -> Result<String, ClientError> {
        match self {
            OutputFormat::Yaml => {
                yaml_serde::to_string(record).map_err(|e| ClientError::Render(e.to_string()))
            }
            _ => serde_json::to_string_pretty(record)
                .map(|s| s + "\n")
                .map_err(|e| ClientError::Render(e.to_string())),
        }
    }
}
