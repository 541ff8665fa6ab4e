//! The TOML configuration file: its schema, how it is read, and how it lands on a [`Config`].
//!
//! Every key is optional; an absent key keeps the built-in default. An unknown key or a bad value refuses
//! the whole file with its path, line and reason — at startup the daemon does not start, on SIGHUP the
//! old configuration stays. Command-line flags and `KEYWARD_*` environment variables override the file.
//!
//! ```toml
//! data_dir = "/var/lib/keyward"
//! verify_socket = "/run/keyward/verify.sock"
//! admin_socket = "/run/keyward/admin.sock"
//! legacy_sunset = "2026-06-30T00:00:00Z"
//! admin_users = ["deploy", 1001]        # names or uids, besides root and the daemon's own uid
//! admin_groups = ["keyward-admin"]
//! verify_groups = ["www-data"]           # optional: only these groups may use the verify socket
//! verify_socket_group = "keyward-clients" # the verify socket's group (default: the daemon's)
//! warm_key_file = "/etc/keyward/warm.key" # default: warm.key in the data directory
//! lookup_key_file = "/etc/keyward/lookup.key" # default: lookup.key in the data directory (a fleet shares one)
//!
//! [log]
//! level = "info"                         # a tracing filter, e.g. "info,keyward_daemon=debug"
//! format = "auto"                        # auto | human | journald | json
//!
//! [runtime]
//! threads = 2                            # threads answering both sockets (default: one per core)
//!
//! [argon2]
//! memory_kib = 19456
//! iterations = 2
//! parallelism = 1
//! workers = 1                            # Argon2 threads (default: cores - 1, at least 1)
//! queue = 96                             # waiting computations before BUSY (default: 96 per thread)
//! nice = 10                              # Argon2 threads run this many nice steps below the daemon (0..=19)
//!
//! [plans]
//! free = "100/min"
//! paid = "1000/min"
//!
//! [limits]
//! max_connections = 1024                # verify socket; the one idle longest makes room for a newcomer
//! max_admin_connections = 16             # the admin socket's own reserve
//! max_frame_bytes = 65536
//! max_in_flight = 128                    # per connection
//! idle_timeout_secs = 300                # a connection with nothing to do is closed
//! frame_timeout_secs = 10                # a started frame must arrive whole within this
//! handshake_timeout_secs = 10
//! drain_timeout_secs = 10                # keep below the unit's TimeoutStopSec
//! flush_interval_ms = 2000               # last-used, credits and usage batches
//!
//! [fleet]                                # fleet mode: many hosts, one set of keys (changes with a restart)
//! engine = "host=/run/postgresql dbname=keyward user=keyward"   # or postgres://user@host:5432/keyward
//! password_file = "/etc/keyward/engine.password"                # never a password in `engine`
//! node_id = "app-1"                      # default: the host name
//! fleet_id = "prod"                      # optional: refuse an engine holding another fleet
//! notify = true                          # LISTEN for changes; the poll catches everything either way
//! poll_interval_ms = 1000
//! connect_timeout_ms = 2000
//! request_timeout_ms = 2000              # the engine's part of one management call
//! shared_plans = ["paid"]                # plans whose limit holds fleet-wide (default: each host's own)
//!
//! [http]                                 # the forward-auth endpoint for reverse proxies (off unless listed)
//! listen = ["127.0.0.1:9311", "/run/keyward/http.sock"]  # loopback host:port and/or Unix socket paths
//! key_header = "X-Custom-Key"            # one more header keys may arrive in (besides Bearer and X-API-Key)
//! query_parameter = "api_key"            # off unless set: keys in the original URI's query end up in logs
//! max_connections = 1024
//!
//! [[http.route]]                         # optional: requirements by original method and path
//! methods = ["GET", "HEAD"]              # default: any method
//! path = "/v1/workspaces/{workspace}/tables/**"   # literal, {workspace}, * (one segment), ** (the rest)
//! scope = "read:tables"
//! limits = ["exports"]
//! cost = 1
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyward_protocol::Rate;
use serde::Deserialize;
use toml::Spanned;

use crate::config::http::{self, HttpSettings, Listen, Route};
use crate::config::{Config, LogFormat, Principal};
use crate::engine::Settings;
use crate::secrets::hasher::{self, HashCost, MAX_NICE};

/// Where the daemon looks for its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/keyward/keyward.toml";

/// The file could not be used. Displays as `PATH:LINE: reason`.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: {reason}")]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem is not at a line (e.g. the file cannot be read).
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    data_dir: Option<PathBuf>,
    verify_socket: Option<PathBuf>,
    admin_socket: Option<PathBuf>,
    legacy_sunset: Option<Spanned<String>>,
    #[serde(default)]
    admin_users: Vec<Spanned<NameOrId>>,
    #[serde(default)]
    admin_groups: Vec<Spanned<NameOrId>>,
    verify_groups: Option<Vec<Spanned<NameOrId>>>,
    verify_socket_group: Option<Spanned<NameOrId>>,
    warm_key_file: Option<PathBuf>,
    lookup_key_file: Option<PathBuf>,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    runtime: RuntimeSection,
    #[serde(default)]
    argon2: Argon2Section,
    #[serde(default)]
    plans: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    limits: LimitsSection,
    fleet: Option<FleetSection>,
    http: Option<HttpSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    #[serde(default)]
    listen: Vec<Spanned<String>>,
    key_header: Option<Spanned<String>>,
    query_parameter: Option<Spanned<String>>,
    max_connections: Option<Spanned<usize>>,
    #[serde(default)]
    route: Vec<Spanned<RouteSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSection {
    #[serde(default)]
    methods: Vec<String>,
    path: String,
    scope: Option<String>,
    #[serde(default)]
    limits: Vec<String>,
    cost: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetSection {
    engine: Spanned<String>,
    password_file: Option<PathBuf>,
    node_id: Option<Spanned<String>>,
    fleet_id: Option<Spanned<String>>,
    notify: Option<bool>,
    poll_interval_ms: Option<Spanned<u64>>,
    connect_timeout_ms: Option<Spanned<u64>>,
    request_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    shared_plans: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NameOrId {
    Id(u32),
    Name(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeSection {
    threads: Option<Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Argon2Section {
    memory_kib: Option<u32>,
    iterations: Option<u32>,
    parallelism: Option<u32>,
    workers: Option<Spanned<usize>>,
    queue: Option<usize>,
    nice: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_connections: Option<Spanned<usize>>,
    max_admin_connections: Option<Spanned<usize>>,
    max_frame_bytes: Option<Spanned<u32>>,
    max_in_flight: Option<Spanned<usize>>,
    idle_timeout_secs: Option<Spanned<u64>>,
    frame_timeout_secs: Option<Spanned<u64>>,
    handshake_timeout_secs: Option<Spanned<u64>>,
    drain_timeout_secs: Option<u64>,
    flush_interval_ms: Option<Spanned<u64>>,
}

/// Reads `path` and applies it over `config`.
pub fn load(path: &Path, config: &mut Config) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        line: 0,
        reason: format!("cannot read: {e}"),
    })?;
    apply(&text, config).map_err(|(span, reason)| ConfigError {
        path: path.to_owned(),
        line: line_of(&text, span),
        reason,
    })
}

/// Applies configuration text over `config`; the error is `(line, reason)` (line 0: not at a line).
pub fn parse(text: &str, config: &mut Config) -> Result<(), (usize, String)> {
    apply(text, config).map_err(|(span, reason)| (line_of(text, span), reason))
}

fn line_of(text: &str, span: Option<Range<usize>>) -> usize {
    span.map_or(0, |span| text[..span.start.min(text.len())].matches('\n').count() + 1)
}

type Located = (Option<Range<usize>>, String);

fn at<T>(value: &Spanned<T>, reason: impl Into<String>) -> Located {
    (Some(value.span()), reason.into())
}

/// Parses `text` and applies it over `config`; errors carry the byte span they are about.
fn apply(text: &str, config: &mut Config) -> Result<(), Located> {
    let file: File = toml::from_str(text).map_err(|e| (e.span(), e.message().to_owned()))?;
    if let Some(dir) = file.data_dir {
        config.data_dir = dir;
    }
    if let Some(socket) = file.verify_socket {
        config.verify_socket = socket;
    }
    if let Some(socket) = file.admin_socket {
        config.admin_socket = socket;
    }
    if let Some(sunset) = &file.legacy_sunset {
        let at_time = sunset.get_ref().parse::<jiff::Timestamp>();
        config.legacy_sunset = Some(at_time.map_err(|e| at(sunset, format!("legacy_sunset: {e}")))?.as_second());
    }
    config.admin_users = principals(&file.admin_users);
    config.admin_groups = principals(&file.admin_groups);
    config.verify_groups = file.verify_groups.as_deref().map(principals);
    if let Some(group) = &file.verify_socket_group {
        let principal = principal(group);
        if principal.group_id().is_none() {
            return Err(at(group, "verify_socket_group: no such group"));
        }
        config.verify_socket_group = Some(principal);
    }
    if let Some(path) = file.warm_key_file {
        config.warm_key_file = Some(path);
    }
    if let Some(path) = file.lookup_key_file {
        config.lookup_key_file = Some(path);
    }
    apply_log(&file.log, config)?;
    if let Some(threads) = &file.runtime.threads {
        config.runtime_threads = Some(positive(threads, "runtime.threads")?);
    }
    apply_argon2(&file.argon2, config)?;
    for (name, rate) in &file.plans {
        keyward_protocol::limits::check_plan_name(name).map_err(|e| at(rate, format!("plans.{name}: {e}")))?;
        let parsed: Rate = rate.get_ref().parse().map_err(|e| at(rate, format!("plans.{name}: {e}")))?;
        config.plans.insert(name.clone(), parsed);
    }
    apply_limits(&file.limits, config)?;
    if let Some(fleet) = &file.fleet {
        config.fleet = Some(fleet_settings(fleet)?);
        for plan in &fleet.shared_plans {
            if !config.plans.contains_key(plan.get_ref()) {
                return Err(at(plan, format!("fleet.shared_plans: no plan named `{}`", plan.get_ref())));
            }
            config.plans.shared.insert(plan.get_ref().clone());
        }
    }
    if let Some(section) = &file.http {
        config.http = http_settings(section)?;
    }
    Ok(())
}

/// The `[http]` section and its `[[http.route]]` tables.
fn http_settings(section: &HttpSection) -> Result<HttpSettings, Located> {
    let mut settings = HttpSettings::default();
    for address in &section.listen {
        settings.listen.push(Listen::parse(address.get_ref()).map_err(|e| at(address, format!("http.listen: {e}")))?);
    }
    if let Some(name) = &section.key_header {
        settings.key_header =
            Some(http::checked_header_name(name.get_ref()).map_err(|e| at(name, format!("http.key_header: {e}")))?);
    }
    if let Some(name) = &section.query_parameter {
        let checked = http::checked_parameter_name(name.get_ref());
        settings.query_parameter = Some(checked.map_err(|e| at(name, format!("http.query_parameter: {e}")))?);
    }
    if let Some(n) = &section.max_connections {
        settings.max_connections = positive(n, "http.max_connections")?;
    }
    for route in &section.route {
        let r = route.get_ref();
        let built = Route::new(&r.methods, &r.path, r.scope.as_deref(), &r.limits, r.cost);
        settings.routes.push(built.map_err(|e| at(route, format!("http.route: {e}")))?);
    }
    Ok(settings)
}

/// The `[fleet]` section as engine settings.
fn fleet_settings(fleet: &FleetSection) -> Result<Settings, Located> {
    let node_id = match &fleet.node_id {
        Some(id) => checked_name(id, "fleet.node_id")?,
        None => crate::host::host_name(),
    };
    let mut settings = Settings::new(fleet.engine.get_ref().clone(), node_id);
    settings.check().map_err(|reason| at(&fleet.engine, format!("fleet.engine: {reason}")))?;
    settings.password_file = fleet.password_file.clone();
    settings.fleet_id = fleet.fleet_id.as_ref().map(|id| checked_name(id, "fleet.fleet_id")).transpose()?;
    settings.notify = fleet.notify.unwrap_or(true);
    let millis = |value: &Option<Spanned<u64>>, name: &str, default: Duration| match value {
        Some(value) => positive(value, name).map(Duration::from_millis),
        None => Ok(default),
    };
    settings.poll_interval = millis(&fleet.poll_interval_ms, "fleet.poll_interval_ms", settings.poll_interval)?;
    settings.connect_timeout = millis(&fleet.connect_timeout_ms, "fleet.connect_timeout_ms", settings.connect_timeout)?;
    settings.request_timeout = millis(&fleet.request_timeout_ms, "fleet.request_timeout_ms", settings.request_timeout)?;
    Ok(settings)
}

/// A node or fleet id: 1 to 64 letters, digits, `.`, `_` or `-`.
fn checked_name(value: &Spanned<String>, name: &str) -> Result<String, Located> {
    let text = value.get_ref();
    let fits = (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !fits {
        return Err(at(value, format!("{name}: 1 to 64 letters, digits, '.', '_' or '-'")));
    }
    Ok(text.clone())
}

fn principals(list: &[Spanned<NameOrId>]) -> Vec<Principal> {
    list.iter().map(principal).collect()
}

fn principal(entry: &Spanned<NameOrId>) -> Principal {
    match entry.get_ref() {
        NameOrId::Id(id) => Principal::Id(*id),
        NameOrId::Name(name) => Principal::Name(name.clone()),
    }
}

fn apply_log(log: &LogSection, config: &mut Config) -> Result<(), Located> {
    if let Some(level) = &log.level {
        tracing_subscriber::EnvFilter::try_new(level.get_ref()).map_err(|e| at(level, format!("log.level: {e}")))?;
        config.log_level = level.get_ref().clone();
    }
    if let Some(format) = &log.format {
        config.log_format = match format.get_ref().as_str() {
            "auto" => LogFormat::Auto,
            "human" => LogFormat::Human,
            "journald" => LogFormat::Journald,
            "json" => LogFormat::Json,
            other => return Err(at(format, format!("log.format: {other:?} is not auto, human, journald or json"))),
        };
    }
    Ok(())
}

fn apply_argon2(argon2: &Argon2Section, config: &mut Config) -> Result<(), Located> {
    let defaults = config.hash_cost;
    let cost = HashCost {
        memory_kib: argon2.memory_kib.unwrap_or(defaults.memory_kib),
        iterations: argon2.iterations.unwrap_or(defaults.iterations),
        parallelism: argon2.parallelism.unwrap_or(defaults.parallelism),
    };
    argon2::Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .map_err(|e| (None, format!("argon2: invalid parameters: {e}")))?;
    config.hash_cost = cost;
    if let Some(workers) = &argon2.workers {
        config.hash_workers = positive(workers, "argon2.workers")?;
        config.hash_queue = hasher::default_queue(config.hash_workers);
    }
    if let Some(queue) = argon2.queue {
        config.hash_queue = queue;
    }
    if let Some(nice) = &argon2.nice {
        config.hash_nice = u8::try_from(*nice.get_ref())
            .ok()
            .filter(|n| *n <= MAX_NICE)
            .ok_or_else(|| at(nice, format!("argon2.nice must be between 0 and {MAX_NICE}")))?;
    }
    Ok(())
}

fn positive<T: Copy + PartialOrd + Default>(value: &Spanned<T>, name: &str) -> Result<T, Located> {
    if *value.get_ref() > T::default() {
        Ok(*value.get_ref())
    } else {
        Err(at(value, format!("{name} must be greater than 0")))
    }
}

fn apply_limits(limits: &LimitsSection, config: &mut Config) -> Result<(), Located> {
    let secs = |value: &Spanned<u64>, name: &str| positive(value, name).map(Duration::from_secs);
    if let Some(n) = &limits.max_connections {
        config.max_connections = positive(n, "limits.max_connections")?;
    }
    if let Some(n) = &limits.max_admin_connections {
        config.max_admin_connections = positive(n, "limits.max_admin_connections")?;
    }
    if let Some(bytes) = &limits.max_frame_bytes {
        let bytes_value = positive(bytes, "limits.max_frame_bytes")?;
        if bytes_value < 1024 {
            return Err(at(bytes, "limits.max_frame_bytes must be at least 1024"));
        }
        config.connection.max_request = bytes_value;
    }
    if let Some(n) = &limits.max_in_flight {
        config.connection.max_in_flight = positive(n, "limits.max_in_flight")?;
    }
    if let Some(value) = &limits.idle_timeout_secs {
        config.connection.idle_timeout = secs(value, "limits.idle_timeout_secs")?;
    }
    if let Some(value) = &limits.frame_timeout_secs {
        config.connection.frame_timeout = secs(value, "limits.frame_timeout_secs")?;
    }
    if let Some(value) = &limits.handshake_timeout_secs {
        config.connection.handshake_timeout = secs(value, "limits.handshake_timeout_secs")?;
    }
    if let Some(value) = limits.drain_timeout_secs {
        config.drain_deadline = Duration::from_secs(value);
    }
    if let Some(value) = &limits.flush_interval_ms {
        config.flush_interval = Duration::from_millis(positive(value, "limits.flush_interval_ms")?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyward.toml");
        std::fs::write(&path, text).unwrap();
        let mut config = Config::new("d".into(), "v".into(), "a".into());
        load(&path, &mut config).map(|()| config)
    }

    #[test]
    fn a_full_file_applies() {
        let config = load_text(
            "data_dir = \"/var/lib/keyward\"\nlegacy_sunset = \"2026-06-30T00:00:00Z\"\nadmin_users = [\"deploy\", 1001]\n\
             [log]\nformat = \"json\"\n[runtime]\nthreads = 3\n[plans]\npaid = \"2000/min\"\ngold = \"10/s\"\n[limits]\nmax_in_flight = 4\nidle_timeout_secs = 60\n",
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/keyward"));
        assert_eq!(config.legacy_sunset, Some(1_782_777_600));
        assert_eq!(config.admin_users, [Principal::Name("deploy".into()), Principal::Id(1001)]);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.plans["paid"].to_string(), "2000/min");
        assert_eq!(config.plans["free"].to_string(), "100/min", "defaults stay");
        assert_eq!(config.plans["gold"].to_string(), "10/s");
        assert_eq!(config.connection.max_in_flight, 4);
        assert_eq!(config.connection.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.runtime_threads, Some(3));
    }

    #[test]
    fn runtime_threads_default_to_the_cores_and_refuse_zero() {
        assert_eq!(load_text("").unwrap().runtime_threads, None);
        let error = load_text("[runtime]\nthreads = 0\n").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        assert!(error.reason.contains("runtime.threads must be greater than 0"), "{error}");
    }

    #[test]
    fn the_argon2_queue_follows_the_workers_unless_set() {
        let config = load_text("[argon2]\nworkers = 3\nnice = 0\n").unwrap();
        assert_eq!((config.hash_workers, config.hash_queue, config.hash_nice), (3, 3 * hasher::QUEUE_PER_WORKER, 0));
        let config = load_text("[argon2]\nqueue = 5\nworkers = 3\n").unwrap();
        assert_eq!((config.hash_queue, config.hash_nice), (5, hasher::DEFAULT_NICE));
        let error = load_text("[log]\nlevel = \"info\"\n[argon2]\nnice = 20\n").unwrap_err();
        assert_eq!(error.line, 4, "{error}");
        assert!(error.reason.contains("argon2.nice"), "{error}");
        assert!(load_text("[argon2]\nnice = -1\n").is_err());
    }

    /// The plan-name rule of `keywardd --plan` holds for `[plans]` in the file too, with the file, the line,
    /// the key and the rule in the error.
    #[test]
    fn a_bad_plan_name_in_the_file_is_refused_with_its_line_and_the_rule() {
        let error = load_text("[plans]\nfree = \"100/min\"\n\"Gold Tier\" = \"5/s\"\n").unwrap_err();
        assert_eq!(error.line, 3, "{error}");
        let shown = error.to_string();
        assert!(shown.contains("keyward.toml:3:") && shown.contains("plans.Gold Tier"), "{shown}");
        assert!(shown.contains("must be a lowercase word"), "{shown}");
        assert!(load_text("[plans]\ngold-2 = \"5/s\"\n").is_ok());
    }

    #[test]
    fn a_fleet_section_applies_and_bad_values_name_their_line() {
        let config = load_text(
            "[plans]\nteam = \"10/s\"\n[fleet]\nengine = \"host=/run/postgresql dbname=keyward\"\nnode_id = \"app-1\"\n\
             notify = false\npoll_interval_ms = 250\nshared_plans = [\"team\"]\n",
        )
        .unwrap();
        let fleet = config.fleet.expect("a [fleet] section");
        assert_eq!(
            (fleet.node_id.as_str(), fleet.notify, fleet.poll_interval),
            ("app-1", false, Duration::from_millis(250))
        );
        assert_eq!(fleet.request_timeout, Duration::from_secs(2), "the default budget");
        assert_eq!(fleet.address(), "host=/run/postgresql dbname=keyward");
        assert!(config.plans.is_shared("team") && !config.plans.is_shared("free"));

        let error = load_text("[fleet]\nengine = \"host=db password=hunter2 dbname=k\"\n").unwrap_err();
        assert!(error.to_string().contains("password_file"), "{error}");
        assert!(!error.to_string().contains("hunter2"), "the password is never repeated: {error}");
        let error = load_text("[fleet]\nengine = \"host=db\"\nnode_id = \"app 1\"\n").unwrap_err();
        assert!(error.to_string().contains(":3: fleet.node_id"), "{error}");
        let error = load_text("[fleet]\nengine = \"host=db\"\nshared_plans = [\"gold\"]\n").unwrap_err();
        assert!(error.to_string().contains("no plan named `gold`"), "{error}");
        assert!(load_text("[fleet]\nnode_id = \"a\"\n").is_err(), "engine is required");
    }

    #[test]
    fn an_http_section_applies_and_bad_values_name_their_line() {
        let config = load_text(
            "[http]\nlisten = [\"127.0.0.1:9311\", \"/run/keyward/http.sock\"]\nkey_header = \"X-Custom-Key\"\n\
             [[http.route]]\nmethods = [\"get\"]\npath = \"/v1/{workspace}/**\"\nscope = \"read:tables\"\n",
        )
        .unwrap();
        assert_eq!(config.http.listen.len(), 2);
        assert_eq!(config.http.key_header.as_ref().map(|name| name.as_str()), Some("x-custom-key"));
        assert_eq!(config.http.query_parameter, None, "off unless set");
        assert_eq!(config.http.routes[0].methods, ["GET"]);
        assert!(load_text("").unwrap().http.listen.is_empty(), "off by default");

        let error = load_text("[http]\nlisten = [\n  \"0.0.0.0:80\",\n]\n").unwrap_err();
        assert_eq!(error.line, 3, "{error}");
        assert!(error.reason.contains("http.listen") && error.reason.contains("loopback"), "{error}");
        let error = load_text("[http]\nlisten = []\n\n[[http.route]]\npath = \"x\"\n").unwrap_err();
        assert!(error.reason.contains("http.route") && error.reason.contains("start with /"), "{error}");
        assert!(load_text("[http]\nkey_header = \"Authorization\"\n").is_err());
        assert!(load_text("[http]\nlisten = []\nport = 80\n").is_err(), "unknown keys are refused");
    }

    #[test]
    fn errors_name_the_file_line_and_reason() {
        let error = load_text("data_dir = \"/x\"\n\n[limits]\nmax_conections = 5\n").unwrap_err();
        assert_eq!(error.line, 4, "{error}");
        assert!(error.reason.contains("max_conections"), "{error}");
        assert!(error.to_string().contains("keyward.toml:4:"), "{error}");

        let error = load_text("[plans]\nfree = \"100/min\"\npaid = \"lots\"\n").unwrap_err();
        assert_eq!(error.line, 3, "{error}");
        assert!(error.reason.contains("plans.paid"), "{error}");

        let error = load_text("[limits]\nmax_in_flight = 0\n").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        let error = load_text("[log]\nformat = \"xml\"\n").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        let error = load_text("legacy_sunset = \"soon\"\n").unwrap_err();
        assert_eq!(error.line, 1, "{error}");
        let error = load_text("data_dir = [\n").unwrap_err();
        assert!(error.line >= 1, "{error}");
    }
}
