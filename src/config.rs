//! Configuration: a TOML file, an embedded default that needs no file, and command-line
//! overrides of the essentials.
//!
//! Unknown keys and bad values are errors that name the key path and what was expected
//! (`server.sip_addr: invalid socket address syntax`). [`Config::validate`] checks what types
//! cannot: relationships between values and limits. The effective configuration prints back
//! as TOML (`imrelay serve --check-config`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::limits::{PAGER_DELIVERY_RETRY_SECS_MAX, SHARDS_MAX, SHUTDOWN_GRACE_MS_MAX};

/// The configuration used when no file is given: every role for the domain `localhost` on
/// loopback, the home role participating (MSRP relayed through the appliance).
pub const EMBEDDED_DEFAULT: &str = r#"# imrelay embedded default: every role, one domain, loopback only.
[server]
domains = ["localhost"]
sip_addr = "127.0.0.1:5060"
transports = ["udp", "tcp"]
msrp_port = 2855
state_dir = "./imrelay-data"
cores = "all"
shutdown_grace_ms = 2000

[roles.home]
enabled = true
mode = "participating"

[roles.group]
enabled = true
mode = "participating"

[roles.deferred]
enabled = true

[pager]
delivery_retry_secs = 30
delivery_retry_secs_max = 1800

[store]
quota_bytes = 67108864
quota_messages = 10000
retention_secs = 604800
retention_secs_max = 2592000
segment_bytes_max = 67108864

[log]
level = "info"
"#;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    /// Static routes: requests for another domain go to its next hop.
    #[serde(default)]
    pub route: Vec<Route>,
    #[serde(default)]
    pub roles: Roles,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub pager: PagerConfig,
    #[serde(default)]
    pub msrp: MsrpConfig,
    #[serde(default)]
    pub log: Log,
}

/// MSRP relay settings (RFC 4976): who may use this server as their MSRP relay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsrpConfig {
    /// The Digest realm of `AUTH` challenges (default: the first of `server.domains`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// Users who may `AUTH`; none means relay mode is off (`AUTH` gets `403`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user: Vec<MsrpUser>,
    /// An MSRP connection on which nothing arrives for this many seconds is closed (idle
    /// channel teardown; default 300). Its sessions stay, for their peer to connect again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_secs: Option<u64>,
}

impl MsrpConfig {
    /// Seconds after which an idle MSRP connection is closed.
    pub fn idle_secs(&self) -> u64 {
        self.idle_secs
            .unwrap_or(crate::limits::MSRP_IDLE_SECS_DEFAULT)
    }
}

/// A relay client's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsrpUser {
    pub name: String,
    pub password: String,
}

impl MsrpConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self
            .idle_secs
            .is_some_and(|s| !(1..=crate::limits::MSRP_IDLE_SECS_MAX).contains(&s))
        {
            return Err(ConfigError::invalid(
                "msrp.idle_secs",
                format!("1 to {}", crate::limits::MSRP_IDLE_SECS_MAX),
            ));
        }
        for (i, u) in self.user.iter().enumerate() {
            let printable =
                |s: &str| !s.is_empty() && !s.chars().any(|c| c == '"' || c.is_control());
            if !printable(&u.name) || !printable(&u.password) {
                return Err(ConfigError::invalid(
                    &format!("msrp.user[{i}]"),
                    "a name and a password, without quotes or control characters".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Pager-mode messages kept for offline users: how delivery is retried, and whether their
/// senders are told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerConfig {
    /// After a delivery fails for a transient reason (`408`, `480`, `486`, `5xx`, no answer),
    /// it is tried again after this many seconds while the user stays registered, the wait
    /// doubling after each failure.
    pub delivery_retry_secs: u64,
    /// The longest wait between two tries, in seconds.
    pub delivery_retry_secs_max: u64,
    /// When set (a SIP URI), the sender of a MESSAGE kept for an offline user is told so by
    /// a `MESSAGE` from this address (as Kamailio's msilo `from_address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_from: Option<String>,
}

impl Default for PagerConfig {
    fn default() -> Self {
        PagerConfig {
            delivery_retry_secs: 30,
            delivery_retry_secs_max: 1800,
            notice_from: None,
        }
    }
}

impl PagerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.delivery_retry_secs == 0 || self.delivery_retry_secs > self.delivery_retry_secs_max
        {
            return Err(ConfigError::invalid(
                "pager.delivery_retry_secs",
                format!(
                    "between 1 and pager.delivery_retry_secs_max ({})",
                    self.delivery_retry_secs_max
                ),
            ));
        }
        if self.delivery_retry_secs_max > PAGER_DELIVERY_RETRY_SECS_MAX {
            return Err(ConfigError::invalid(
                "pager.delivery_retry_secs_max",
                format!("at most {PAGER_DELIVERY_RETRY_SECS_MAX}"),
            ));
        }
        if let Some(from) = &self.notice_from {
            if crate::sip::uri::SipUri::parse(from.as_bytes()).is_err() {
                return Err(ConfigError::invalid(
                    "pager.notice_from",
                    format!("{from:?} is not a SIP URI (e.g. \"sip:imrelay@example.com\")"),
                ));
            }
        }
        Ok(())
    }

    /// The wait before try `failures + 1` of a delivery that failed `failures` times in a
    /// row (at least 1).
    pub fn retry_after(&self, failures: u32) -> std::time::Duration {
        let doublings = failures.saturating_sub(1).min(32);
        let secs = self
            .delivery_retry_secs
            .saturating_mul(1u64 << doublings)
            .min(self.delivery_retry_secs_max);
        std::time::Duration::from_secs(secs)
    }
}

/// The deferred store's policy: who may have messages stored, how much, for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Bytes of stored message bodies per recipient.
    pub quota_bytes: u64,
    /// Stored messages per recipient.
    pub quota_messages: u32,
    /// How long a message is kept when its sender asks for nothing else, in seconds.
    pub retention_secs: u64,
    /// The longest a sender may ask for (`Expires`), in seconds.
    pub retention_secs_max: u64,
    /// A segment file is sealed and a new one started past this many bytes.
    pub segment_bytes_max: u64,
    /// When not empty, only these recipients (AORs) may have messages stored.
    #[serde(default)]
    pub allow: Vec<String>,
    /// These recipients may never have messages stored.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Per-recipient quotas that replace the defaults.
    #[serde(default)]
    pub quota_override: Vec<QuotaOverride>,
}

/// A recipient with its own quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverride {
    pub recipient: String,
    pub bytes: u64,
    pub messages: u32,
}

impl Default for StoreConfig {
    /// The store's own defaults ([`crate::store::core::Policy::default`]).
    fn default() -> Self {
        let p = crate::store::core::Policy::default();
        StoreConfig {
            quota_bytes: p.quota_bytes,
            quota_messages: p.quota_messages,
            retention_secs: p.retention_ms / 1000,
            retention_secs_max: p.retention_ms_max / 1000,
            segment_bytes_max: p.segment_bytes_max,
            allow: Vec::new(),
            deny: Vec::new(),
            quota_override: Vec::new(),
        }
    }
}

impl StoreConfig {
    /// The store's policy.
    pub fn policy(&self) -> crate::store::core::Policy {
        crate::store::core::Policy {
            allow: self.allow.iter().map(|a| a.as_bytes().to_vec()).collect(),
            deny: self.deny.iter().map(|a| a.as_bytes().to_vec()).collect(),
            quota_bytes: self.quota_bytes,
            quota_messages: self.quota_messages,
            quota_overrides: self
                .quota_override
                .iter()
                .map(|o| (o.recipient.as_bytes().to_vec(), o.bytes, o.messages))
                .collect(),
            retention_ms: self.retention_secs.saturating_mul(1000),
            retention_ms_max: self.retention_secs_max.saturating_mul(1000),
            segment_bytes_max: self.segment_bytes_max,
            ..crate::store::core::Policy::default()
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.quota_bytes == 0 || self.quota_messages == 0 {
            return Err(ConfigError::invalid(
                if self.quota_bytes == 0 {
                    "store.quota_bytes"
                } else {
                    "store.quota_messages"
                },
                "a quota above 0 (deny a recipient with store.deny)".into(),
            ));
        }
        if self.retention_secs == 0 || self.retention_secs > self.retention_secs_max {
            return Err(ConfigError::invalid(
                "store.retention_secs",
                format!(
                    "between 1 and store.retention_secs_max ({})",
                    self.retention_secs_max
                ),
            ));
        }
        if !(STORE_SEGMENT_BYTES_MIN..=STORE_SEGMENT_BYTES_MAX).contains(&self.segment_bytes_max) {
            return Err(ConfigError::invalid(
                "store.segment_bytes_max",
                format!("between {STORE_SEGMENT_BYTES_MIN} and {STORE_SEGMENT_BYTES_MAX}"),
            ));
        }
        for (i, o) in self.quota_override.iter().enumerate() {
            if o.recipient.is_empty() || o.bytes == 0 || o.messages == 0 {
                return Err(ConfigError::invalid(
                    &format!("store.quota_override[{i}]"),
                    "a recipient and quotas above 0".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Smallest and largest segment size an operator may configure, in bytes (a segment must hold
/// the largest record; a huge one delays reclaiming space).
pub const STORE_SEGMENT_BYTES_MIN: u64 = 2 * crate::limits::STORE_RECORD_PAYLOAD_BYTES_MAX as u64;
pub const STORE_SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Listen addresses, identity and placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Domains this server is authoritative for (its `myself` set, with its listen address).
    pub domains: Vec<String>,
    /// Other host names or addresses that also mean this server (e.g. a public name).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// SIP listen address for every enabled transport. Port 0 picks a free port.
    pub sip_addr: SocketAddr,
    /// SIP transports to listen on.
    #[serde(default = "default_transports")]
    pub transports: Vec<SipTransport>,
    /// MSRP base port: shard *i* listens on `msrp_port + i`. 0 picks free ports.
    pub msrp_port: u16,
    /// Where the deferred store and other state live. `$STATE_DIRECTORY` (systemd) wins
    /// over the default when no file or flag sets it.
    pub state_dir: PathBuf,
    /// Which CPUs get a shard: `"all"`, a count (`2`: the first two online CPUs), or a list
    /// of CPU numbers (`[0, 1]`).
    #[serde(default)]
    pub cores: Cores,
    /// How long shards may finish in-flight work after SIGTERM/SIGINT, in milliseconds.
    #[serde(default = "default_grace")]
    pub shutdown_grace_ms: u64,
    /// glommio's stall detector on every shard: a task queue that keeps its CPU past its
    /// budget (10 ms) is logged with a backtrace. It arms and disarms a timer (two system
    /// calls) each time a task queue runs; off saves that on every wake-up.
    #[serde(default = "default_true")]
    pub detect_stalls: bool,
}

fn default_true() -> bool {
    true
}

fn default_transports() -> Vec<SipTransport> {
    vec![SipTransport::Udp, SipTransport::Tcp]
}

fn default_grace() -> u64 {
    2000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SipTransport {
    Udp,
    Tcp,
}

/// CPU selection for shards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cores {
    #[default]
    All,
    Count(usize),
    List(Vec<usize>),
}

impl Serialize for Cores {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cores::All => s.serialize_str("all"),
            Cores::Count(n) => s.serialize_u64(*n as u64),
            Cores::List(l) => l.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Cores {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cores, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Cores;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"all\", a number of cores, or a list of CPU numbers")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cores, E> {
                if v == "all" {
                    Ok(Cores::All)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Cores, E> {
                usize::try_from(v)
                    .map(Cores::Count)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Cores, E> {
                usize::try_from(v)
                    .map(Cores::Count)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Cores, A::Error> {
                let mut l = Vec::new();
                while let Some(c) = a.next_element::<usize>()? {
                    if l.len() == SHARDS_MAX {
                        return Err(serde::de::Error::invalid_length(l.len() + 1, &self));
                    }
                    l.push(c);
                }
                Ok(Cores::List(l))
            }
        }
        d.deserialize_any(V)
    }
}

impl Cores {
    /// Parses the `--cores` flag: `all`, `N`, or a list like `0,2-3`.
    pub fn parse_flag(s: &str) -> Result<Cores, String> {
        let s = s.trim();
        if s == "all" {
            return Ok(Cores::All);
        }
        if !s.contains([',', '-']) {
            return s
                .parse::<usize>()
                .map(Cores::Count)
                .map_err(|_| format!("--cores: expected all, N or a list like 0,2-3, got {s:?}"));
        }
        let mut list = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let bad = || format!("--cores: bad CPU number or range {part:?} in {s:?}");
            match part.split_once('-') {
                Some((a, b)) => {
                    let a: usize = a.trim().parse().map_err(|_| bad())?;
                    let b: usize = b.trim().parse().map_err(|_| bad())?;
                    if a > b {
                        return Err(bad());
                    }
                    list.extend(a..=b);
                }
                None => list.push(part.parse().map_err(|_| bad())?),
            }
        }
        Ok(Cores::List(list))
    }

    /// The CPUs to pin shards to, given the CPUs this process may run on.
    pub fn resolve(&self, online: &[usize]) -> Result<Vec<usize>, ConfigError> {
        let cpus = match self {
            Cores::All => online.to_vec(),
            Cores::Count(n) => {
                if *n == 0 || *n > online.len() {
                    return Err(ConfigError::invalid(
                        "server.cores",
                        format!("{n} cores asked for, {} available", online.len()),
                    ));
                }
                online[..*n].to_vec()
            }
            Cores::List(list) => {
                let mut seen = Vec::with_capacity(list.len());
                for &c in list {
                    if !online.contains(&c) {
                        return Err(ConfigError::invalid(
                            "server.cores",
                            format!("CPU {c} is not available to this process (have {online:?})"),
                        ));
                    }
                    if seen.contains(&c) {
                        return Err(ConfigError::invalid(
                            "server.cores",
                            format!("CPU {c} is listed twice"),
                        ));
                    }
                    seen.push(c);
                }
                seen
            }
        };
        if cpus.is_empty() || cpus.len() > SHARDS_MAX {
            return Err(ConfigError::invalid(
                "server.cores",
                format!("between 1 and {SHARDS_MAX} cores, got {}", cpus.len()),
            ));
        }
        Ok(cpus)
    }
}

/// Which server roles run, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    #[serde(default)]
    pub home: ModeRole,
    #[serde(default)]
    pub group: ModeRole,
    #[serde(default)]
    pub deferred: Role,
}

/// A role with a participating / non-participating mode (patent: IM servers A, B and D).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeRole {
    pub enabled: bool,
    #[serde(default)]
    pub mode: Mode,
    /// Home role: the deferred server (IM server C) that takes requests for users of ours
    /// who are offline (`ip:port`, UDP). Without it, this process's own deferred role does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_server: Option<SocketAddr>,
    /// Group role: the groups this server controls (`[[roles.group.groups]]`), re-read from
    /// the configuration file on `SIGHUP`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
}

impl Default for ModeRole {
    fn default() -> Self {
        ModeRole {
            enabled: true,
            mode: Mode::Participating,
            deferred_server: None,
            groups: Vec::new(),
        }
    }
}

/// A group (patent: group X at IM server D): its SIP URI, in one of our domains, and its
/// members' SIP URIs. A session-mode message to the group goes to every member but the
/// sender, one leg each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub uri: String,
    pub members: Vec<String>,
}

/// A role without modes (patent: IM server C, the deferred server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub enabled: bool,
    /// Deferred role: its own SIP URI — the sender of "messages waiting" notifications and
    /// the target of retrieval `INVITE`s (default `sip:deferred@<first domain>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Deferred role: servers (IP addresses) whose retrieval requests are taken for the user
    /// in their `From` — the users' home servers. Others must come from where the user is
    /// registered here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted: Vec<IpAddr>,
    /// Deferred role: when a user registers, its waiting session-mode messages are pushed
    /// to it in a session this server opens (figure 6); otherwise the user fetches them.
    #[serde(default = "yes")]
    pub push: bool,
}

fn yes() -> bool {
    true
}

impl Default for Role {
    fn default() -> Self {
        Role {
            enabled: true,
            uri: None,
            trusted: Vec::new(),
            push: true,
        }
    }
}

/// Participating: a B2BUA that terminates SIP and MSRP on each side. Non-participating: a
/// stateful proxy; SDP untouched, MSRP end to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Participating,
    NonParticipating,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a `tracing` filter directive.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
        }
    }
}

/// A configuration that cannot be used, naming the key and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the configuration came from (a file path, `embedded default`, or a flag).
    pub source: String,
    /// The key path, e.g. `server.sip_addr`.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn invalid(key: &str, message: String) -> ConfigError {
        ConfigError {
            source: String::new(),
            key: key.into(),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.source.is_empty() {
            write!(f, "{}: ", self.source)?;
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Command-line overrides of the essentials.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub sip_addr: Option<SocketAddr>,
    pub msrp_port: Option<u16>,
    pub state_dir: Option<PathBuf>,
    pub cores: Option<Cores>,
    pub domain: Option<String>,
}

impl Config {
    /// Parses TOML text; `source` names it in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError {
                source: source.into(),
                key: if key == "." { String::new() } else { key },
                message: inner.message().trim().to_string(),
            }
        })?;
        cfg.validate().map_err(|mut e| {
            e.source = source.into();
            e
        })?;
        Ok(cfg)
    }

    /// The embedded default.
    pub fn embedded() -> Config {
        // The embedded text is part of the binary and covered by a test; failing to parse it
        // is a build defect, never an operator's or a peer's input.
        match Config::from_toml(EMBEDDED_DEFAULT, "embedded default") {
            Ok(c) => c,
            Err(e) => unreachable!("embedded default config is invalid: {e}"),
        }
    }

    /// Loads `path` (or the embedded default), then applies `$STATE_DIRECTORY` and the flags.
    ///
    /// `state_directory` is the value of `$STATE_DIRECTORY`, applied only when neither a file
    /// nor a flag chose the state directory.
    pub fn load(
        path: Option<&std::path::Path>,
        overrides: &Overrides,
        state_directory: Option<&str>,
    ) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                    source: p.display().to_string(),
                    key: String::new(),
                    message: format!("cannot read configuration file: {e}"),
                })?;
                Config::from_toml(&text, &p.display().to_string())?
            }
            None => {
                let mut c = Config::embedded();
                // systemd's StateDirectory= may list several directories separated by ':'.
                if let Some(dir) = state_directory.and_then(|d| d.split(':').next()) {
                    if !dir.is_empty() {
                        c.server.state_dir = PathBuf::from(dir);
                    }
                }
                c
            }
        };
        cfg.apply(overrides);
        cfg.validate().map_err(|mut e| {
            e.source = "command line".into();
            e
        })?;
        Ok(cfg)
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(a) = o.sip_addr {
            self.server.sip_addr = a;
        }
        if let Some(p) = o.msrp_port {
            self.server.msrp_port = p;
        }
        if let Some(d) = &o.state_dir {
            self.server.state_dir = d.clone();
        }
        if let Some(c) = &o.cores {
            self.server.cores = c.clone();
        }
        if let Some(d) = &o.domain {
            self.server.domains = vec![d.clone()];
        }
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_groups()?;
        if let Some(uri) = &self.roles.deferred.uri {
            let user = crate::sip::uri::SipUri::parse(uri.as_bytes())
                .ok()
                .and_then(|u| u.user().map(<[u8]>::to_vec));
            if user.is_none() {
                return Err(ConfigError::invalid(
                    "roles.deferred.uri",
                    format!(
                        "{uri:?} is not a SIP URI with a user (e.g. \"sip:deferred@example.com\")"
                    ),
                ));
            }
        }
        for (i, r) in self.route.iter().enumerate() {
            let ours = self
                .server
                .domains
                .iter()
                .chain(self.server.aliases.iter())
                .any(|d| d.eq_ignore_ascii_case(&r.domain));
            if r.domain.is_empty() || ours {
                return Err(ConfigError::invalid(
                    &format!("route[{i}].domain"),
                    "a route needs a domain that is not one of server.domains or aliases".into(),
                ));
            }
        }
        let s = &self.server;
        if s.domains.is_empty() {
            return Err(ConfigError::invalid(
                "server.domains",
                "at least one domain is needed".into(),
            ));
        }
        for (i, d) in s.domains.iter().chain(s.aliases.iter()).enumerate() {
            if !is_host_name(d) {
                let key = if i < s.domains.len() {
                    format!("server.domains[{i}]")
                } else {
                    format!("server.aliases[{}]", i - s.domains.len())
                };
                return Err(ConfigError::invalid(
                    &key,
                    format!("{d:?} is not a host name or IP address"),
                ));
            }
        }
        if s.transports.is_empty() {
            return Err(ConfigError::invalid(
                "server.transports",
                "at least one of \"udp\", \"tcp\"".into(),
            ));
        }
        if let Cores::List(l) = &s.cores {
            if l.len() > SHARDS_MAX || l.is_empty() {
                return Err(ConfigError::invalid(
                    "server.cores",
                    format!("between 1 and {SHARDS_MAX} CPUs"),
                ));
            }
        }
        if s.msrp_port != 0 {
            let shards = match &s.cores {
                Cores::All => 1,
                Cores::Count(n) => *n,
                Cores::List(l) => l.len(),
            };
            if usize::from(s.msrp_port) + shards > usize::from(u16::MAX) + 1 {
                return Err(ConfigError::invalid(
                    "server.msrp_port",
                    format!("{} + {shards} shards runs past port 65535", s.msrp_port),
                ));
            }
        }
        if s.shutdown_grace_ms > SHUTDOWN_GRACE_MS_MAX {
            return Err(ConfigError::invalid(
                "server.shutdown_grace_ms",
                format!("at most {SHUTDOWN_GRACE_MS_MAX}"),
            ));
        }
        if s.state_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "server.state_dir",
                "a directory path".into(),
            ));
        }
        self.store.validate()?;
        self.pager.validate()?;
        self.msrp.validate()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::invalid(
                "log.level",
                format!("{:?} is not a level or filter directive", self.log.level),
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }

    /// The MSRP relay's credentials (RFC 4976 `AUTH`), keyed by `key` for nonces.
    pub fn msrp_credentials(
        &self,
        key: std::collections::hash_map::RandomState,
    ) -> crate::msrp::auth::Credentials {
        let realm = self
            .msrp
            .realm
            .clone()
            .or_else(|| self.server.domains.first().cloned())
            .unwrap_or_default();
        crate::msrp::auth::Credentials::new(
            &realm,
            self.msrp
                .user
                .iter()
                .map(|u| (u.name.clone(), u.password.clone())),
            key,
        )
    }

    /// The identity this server answers to (RFC 3261 §16.4 "myself"), with its groups.
    pub fn identity(&self) -> Identity {
        let mut id = self.base_identity();
        id.groups = GroupTable::new(self.group_table_of(&id));
        id
    }

    /// [`Config::identity`] without the groups (which are named through it).
    fn base_identity(&self) -> Identity {
        Identity {
            names: self
                .server
                .domains
                .iter()
                .chain(self.server.aliases.iter())
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            addr: self.server.sip_addr,
            notice_from: self.pager.notice_from.clone(),
            deferred: self.roles.deferred.enabled,
            deferred_trusted: self.roles.deferred.trusted.clone(),
            deferred_push: self.roles.deferred.enabled
                && self.roles.deferred.push
                && self.roles.home.deferred_server.is_none(),
            deferred_uri: self.roles.deferred.uri.clone().unwrap_or_else(|| {
                format!(
                    "sip:deferred@{}",
                    self.server
                        .domains
                        .first()
                        .map_or("localhost", String::as_str)
                )
            }),
            deferred_server: self
                .roles
                .home
                .deferred_server
                .filter(|_| self.roles.home.enabled),
            routes: self
                .route
                .iter()
                .map(|r| (r.domain.to_ascii_lowercase(), r.next_hop))
                .collect(),
            home: self.roles.home.enabled,
            home_participating: self.roles.home.enabled
                && self.roles.home.mode == Mode::Participating,
            groups: GroupTable::default(),
        }
    }

    /// The groups by address of record ([`Identity::home_aor`]), with their members' URIs;
    /// empty when the group role is off.
    pub fn group_table(&self) -> Groups {
        self.group_table_of(&self.base_identity())
    }

    fn group_table_of(&self, id: &Identity) -> Groups {
        if !self.roles.group.enabled {
            return Groups::new();
        }
        self.groups_named_by(id)
    }

    /// The configured groups named by `id`'s domains (a reload names them by the domains the
    /// server started with), whether or not the group role is on.
    pub fn groups_named_by(&self, id: &Identity) -> Groups {
        self.roles
            .group
            .groups
            .iter()
            .filter_map(|g| {
                let aor = id.home_aor(g.uri.as_bytes())?;
                let members = g.members.iter().map(|m| m.as_bytes().to_vec()).collect();
                Some((aor, members))
            })
            .collect()
    }
}

impl Config {
    /// Groups: only under `roles.group`, each a SIP URI with a user in one of our domains,
    /// with 1 to [`GROUP_MEMBERS_MAX`] members that are SIP URIs with a user, at most
    /// [`GROUPS_MAX`] groups, no group twice; and the group role always participates.
    fn validate_groups(&self) -> Result<(), ConfigError> {
        use crate::limits::{GROUPS_MAX, GROUP_MEMBERS_MAX};
        let id = self.base_identity();
        if !self.roles.home.groups.is_empty() {
            return Err(ConfigError::invalid(
                "roles.home.groups",
                "groups belong to the group role: [[roles.group.groups]]".into(),
            ));
        }
        let g = &self.roles.group;
        if g.enabled && g.mode == Mode::NonParticipating {
            return Err(ConfigError::invalid(
                "roles.group.mode",
                "a group server fans each message out to its members, so it always \
                 participates (figures 3 and 4 differ in the home servers' mode)"
                    .into(),
            ));
        }
        if g.groups.len() > GROUPS_MAX {
            return Err(ConfigError::invalid(
                "roles.group.groups",
                format!("at most {GROUPS_MAX} groups"),
            ));
        }
        fn sip_user(s: &str) -> Option<crate::sip::uri::SipUri<'_>> {
            crate::sip::uri::SipUri::parse(s.as_bytes())
                .ok()
                .filter(|u| u.user().is_some())
        }
        let mut seen = std::collections::HashSet::new();
        for (i, group) in g.groups.iter().enumerate() {
            let key = format!("roles.group.groups[{i}]");
            let Some(u) = sip_user(&group.uri) else {
                return Err(ConfigError::invalid(
                    &format!("{key}.uri"),
                    format!("{:?} is not a SIP URI with a user", group.uri),
                ));
            };
            let ours = self
                .server
                .domains
                .iter()
                .chain(self.server.aliases.iter())
                .any(|d| d.as_bytes().eq_ignore_ascii_case(u.host_bytes()));
            if !ours {
                return Err(ConfigError::invalid(
                    &format!("{key}.uri"),
                    format!("{:?} is not in one of server.domains", group.uri),
                ));
            }
            let aor = id.home_aor(group.uri.as_bytes()).unwrap_or_default();
            if !seen.insert(aor) {
                return Err(ConfigError::invalid(
                    &format!("{key}.uri"),
                    format!("{:?} is defined twice", group.uri),
                ));
            }
            if group.members.is_empty() || group.members.len() > GROUP_MEMBERS_MAX {
                return Err(ConfigError::invalid(
                    &format!("{key}.members"),
                    format!("1 to {GROUP_MEMBERS_MAX} members"),
                ));
            }
            let mut members = std::collections::HashSet::new();
            for (j, m) in group.members.iter().enumerate() {
                let at = format!("{key}.members[{j}]");
                if sip_user(m).is_none() {
                    return Err(ConfigError::invalid(
                        &at,
                        format!("{m:?} is not a SIP URI with a user"),
                    ));
                }
                let aor = id.home_aor(m.as_bytes()).unwrap_or_default();
                if !members.insert(aor.clone()) {
                    return Err(ConfigError::invalid(&at, format!("{m:?} is listed twice")));
                }
                // A group within a group would send each message round again (a loop).
                let is_group = g
                    .groups
                    .iter()
                    .any(|o| id.home_aor(o.uri.as_bytes()).as_ref() == Some(&aor));
                if is_group {
                    return Err(ConfigError::invalid(
                        &at,
                        format!("{m:?} is a group: groups do not contain groups"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A static route (`[[route]]`): requests whose Request-URI names `domain` are forwarded to
/// `next_hop` over UDP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub domain: String,
    pub next_hop: SocketAddr,
}

/// Host names and addresses that mean this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Lower-cased domain names and aliases.
    pub names: Vec<String>,
    /// The SIP listen address (its port is the real one once bound).
    pub addr: SocketAddr,
    /// Other domains this server forwards to, with their next hop (`[[route]]`).
    pub routes: Vec<(String, SocketAddr)>,
    /// Who tells a sender that its MESSAGE was kept for later (`pager.notice_from`).
    pub notice_from: Option<String>,
    /// The deferred role runs here: offline users' messages are stored by this process.
    pub deferred: bool,
    /// The deferred role's own URI (`roles.deferred.uri`).
    pub deferred_uri: String,
    /// Servers whose retrieval requests are taken for the user they name.
    pub deferred_trusted: Vec<IpAddr>,
    /// Waiting session-mode messages are pushed to a user who registers.
    pub deferred_push: bool,
    /// Requests for offline users of ours go to this deferred server instead.
    pub deferred_server: Option<SocketAddr>,
    /// The home role runs here (registrar for users); without it, `REGISTER`s are taken
    /// only from `deferred_trusted` servers (third-party registrations).
    pub home: bool,
    /// The home role participates (a B2BUA for session-mode messages, DESIGN §2).
    pub home_participating: bool,
    /// The group role's groups, shared by every shard and replaced on a reload.
    pub groups: GroupTable,
}

/// Each group's address of record (at the primary domain) and its members' URIs.
pub type Groups = std::collections::HashMap<Vec<u8>, Vec<Vec<u8>>>;

/// The group role's groups as every shard sees them: replaced as a whole when the
/// configuration is reloaded (`SIGHUP`), read when a session for a group arrives.
#[derive(Debug, Clone, Default)]
pub struct GroupTable(std::sync::Arc<std::sync::RwLock<Groups>>);

impl GroupTable {
    pub fn new(groups: Groups) -> GroupTable {
        GroupTable(std::sync::Arc::new(std::sync::RwLock::new(groups)))
    }

    /// Replaces the groups (every holder of a clone sees the new ones).
    pub fn replace(&self, groups: Groups) {
        // A writer that panicked left a whole table behind (replacement is one move).
        let mut g = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = groups;
    }

    /// The members of group `aor` (an address of record at the primary domain), if it is
    /// one.
    /// Whether `aor` names a group (one read, nothing copied).
    pub fn contains(&self, aor: &[u8]) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(aor)
    }

    pub fn members(&self, aor: &[u8]) -> Option<Vec<Vec<u8>>> {
        let g = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.get(aor).cloned()
    }

    pub fn len(&self) -> usize {
        self.0.read().map_or(0, |g| g.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for GroupTable {
    fn eq(&self, other: &GroupTable) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
            || match (self.0.read(), other.0.read()) {
                (Ok(a), Ok(b)) => *a == *b,
                _ => false,
            }
    }
}

impl Eq for GroupTable {}

impl Identity {
    /// `aor` (a canonical `sip:user@host`) as the shards name users: a host that is any
    /// name or address of this server becomes the primary domain.
    pub fn at_home(&self, aor: Vec<u8>) -> Vec<u8> {
        let Some(at) = aor.iter().rposition(|&b| b == b'@') else {
            return aor;
        };
        match self.names.first() {
            Some(home) if self.is_myself(&aor[at + 1..], None) => {
                let mut v = aor[..=at].to_vec();
                v.extend_from_slice(home.as_bytes());
                v
            }
            _ => aor,
        }
    }

    /// The address of record of a SIP URI ([`crate::registrar::canonical_aor`], then
    /// [`Identity::at_home`]); `None` when it has none.
    pub fn home_aor(&self, uri: &[u8]) -> Option<Vec<u8>> {
        crate::registrar::canonical_aor(uri)
            .ok()
            .map(|aor| self.at_home(aor))
    }

    /// `true` when `host[:port]` of a URI names this server: one of its domains (any port),
    /// or its listen address with no port, the default port 5060, or the listen port.
    pub fn is_myself(&self, host: &[u8], port: Option<u16>) -> bool {
        let host_s = match std::str::from_utf8(host) {
            Ok(h) => h.trim_start_matches('[').trim_end_matches(']'),
            Err(_) => return false,
        };
        if self
            .names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(host_s.as_bytes()))
        {
            return true;
        }
        let Ok(ip) = host_s.parse::<IpAddr>() else {
            return false;
        };
        let listen_ip = self.addr.ip();
        let ip_matches = ip == listen_ip || (listen_ip.is_unspecified() && is_local_ip(ip));
        ip_matches && port.is_none_or(|p| p == self.addr.port())
    }
}

fn is_local_ip(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// A DNS name (RFC 1123 labels) or an IP address.
fn is_host_name(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests;
