//! Log output: human lines on a terminal, plain lines without timestamps under journald (the journal adds
//! its own), or JSON; a filter that SIGHUP can change. The storage engine's own logging is capped at
//! warnings whatever the filter says: at trace level it would describe stored pages, and stored values
//! include hashes, which never belong in a log.

use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// Changes the log filter of the running process.
#[derive(Clone)]
pub struct LogHandle(reload::Handle<EnvFilter, Registry>);

impl LogHandle {
    pub fn set_level(&self, level: &str) -> Result<(), LogError> {
        self.0.reload(filter(level)?).map_err(LogError::Reload)
    }
}

/// Why logging could not be set up or its filter changed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("bad log filter {filter:?}: {source}")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot change the log filter: {0}")]
    Reload(#[source] reload::Error),
    #[error("cannot install the logger: {0}")]
    Install(#[source] tracing_subscriber::util::TryInitError),
}

fn filter(level: &str) -> Result<EnvFilter, LogError> {
    let filter = EnvFilter::try_new(level).map_err(|source| LogError::Filter { filter: level.to_owned(), source })?;
    Ok(filter.add_directive("sled=warn".parse().expect("a valid directive")))
}

/// The subscriber the output layer sits on: the registry under the reloadable filter.
type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human lines with colours on a terminal, journald lines under systemd, plain lines otherwise.
    #[default]
    Auto,
    /// Timestamped human lines.
    Human,
    /// Plain lines without timestamps (the journal adds its own).
    Journald,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber writing to stderr.
pub fn init(format: LogFormat, level: &str) -> Result<LogHandle, LogError> {
    let (filter, handle) = reload::Layer::new(filter(level)?);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let format = match format {
        LogFormat::Auto if terminal => LogFormat::Human,
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Human,
        chosen => chosen,
    };
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output: Box<dyn Layer<Filtered> + Send + Sync> = match format {
        LogFormat::Json => lines.json().boxed(),
        LogFormat::Journald => lines.without_time().with_ansi(false).boxed(),
        _ => lines.with_ansi(terminal).boxed(),
    };
    tracing_subscriber::registry().with(filter).with(output).try_init().map_err(LogError::Install)?;
    Ok(LogHandle(handle))
}
