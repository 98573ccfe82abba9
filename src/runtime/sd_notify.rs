//! The systemd service notification protocol, as described in sd_notify(3).
//!
//! A unit with `Type=notify` starts the service with `NOTIFY_SOCKET` naming an `AF_UNIX`
//! datagram socket that the service manager reads. The service tells the manager about itself by
//! sending datagrams to it, each a newline-separated list of `VARIABLE=value` assignments:
//!
//! | datagram          | meaning                                                            |
//! |-------------------|--------------------------------------------------------------------|
//! | `READY=1`         | start-up finished: every shard is listening, the unit is *active*  |
//! | `STOPPING=1`      | shutdown began: the unit is *deactivating*                         |
//! | `WATCHDOG=1`      | keep-alive ping; missing it for `WatchdogSec=` restarts the unit   |
//! | `STATUS=…`        | one line of free text shown by `systemctl status`                  |
//! | `MAINPID=…`       | the pid the manager should treat as the service's main process     |
//! | `EXTEND_TIMEOUT_USEC=…` | ask for more time before the start/stop timeout fires        |
//!
//! `NOTIFY_SOCKET` is either an absolute file-system path (`/run/systemd/notify`) or, when it
//! starts with `@`, a name in the Linux abstract socket namespace (the `@` stands for the leading
//! NUL byte). Newer managers may also hand out `vsock:` addresses, which are only used for
//! virtual-machine guests; they are reported as unsupported rather than misread as a path.
//!
//! The watchdog is configured through two more variables: `WATCHDOG_USEC`, the interval after
//! which a silent service is considered hung, and `WATCHDOG_PID`, the process that interval
//! applies to. When `WATCHDOG_PID` is set and names another process (a child that inherited the
//! environment), the watchdog is not ours to feed. sd_watchdog_enabled(3) recommends pinging at
//! half the interval, which is what [`watchdog_interval`] returns.
//!
//! Invariants:
//! - Nothing read from the environment is trusted: every malformed value is a [`NotifyError`]
//!   that names the variable and the value, never a panic.
//! - A state string sent through the typed helpers is exactly one assignment; values that
//!   would smuggle in a second assignment (a newline) or end the string early (a NUL) are
//!   refused with [`io::ErrorKind::InvalidInput`].
//! - Sending never blocks for longer than [`NOTIFY_SEND_TIMEOUT_MS_MAX`]: a stuck manager costs
//!   a lost notification, not a stuck thread.
//!
//! This module performs blocking socket I/O and reads the process environment, so it belongs to
//! the runtime's control thread, never to a shard.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Environment variable naming the manager's notification socket.
pub const NOTIFY_SOCKET_VAR: &str = "NOTIFY_SOCKET";

/// Environment variable holding the watchdog timeout, in microseconds.
pub const WATCHDOG_USEC_VAR: &str = "WATCHDOG_USEC";

/// Environment variable naming the process the watchdog timeout applies to.
pub const WATCHDOG_PID_VAR: &str = "WATCHDOG_PID";

/// Longest time one notification may wait for room in the manager's receive queue, in
/// milliseconds. The manager drains its queue continuously, so a send that waits this long means
/// the manager is wedged; giving up keeps the caller (which also drives shutdown) responsive.
/// Well below the unit's `WatchdogSec=10s` so a single stuck ping cannot by itself eat the
/// watchdog interval.
pub const NOTIFY_SEND_TIMEOUT_MS_MAX: u64 = 1_000;

/// systemd's `USEC_INFINITY`: a watchdog timeout of this value means "no watchdog".
const WATCHDOG_USEC_INFINITY: u64 = u64::MAX;

/// What is wrong with the notification environment.
#[derive(Debug)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor an `@` abstract name.
    SocketNotAbsolute {
        /// The value as found in the environment.
        value: OsString,
    },
    /// `NOTIFY_SOCKET` is `@` with no name after it.
    SocketEmptyAbstractName,
    /// `NOTIFY_SOCKET` names a transport this process does not speak (`vsock:`).
    SocketUnsupportedTransport {
        /// The value as found in the environment.
        value: OsString,
    },
    /// `NOTIFY_SOCKET` is well-formed but cannot be a Unix socket address (for instance a
    /// path longer than `sun_path`).
    SocketAddress {
        /// The value as found in the environment.
        value: OsString,
        /// Why the address was rejected.
        source: io::Error,
    },
    /// Creating the local datagram socket failed.
    Socket(io::Error),
    /// `WATCHDOG_USEC` is not a decimal count of microseconds.
    WatchdogUsec {
        /// The value as found in the environment.
        value: String,
    },
    /// `WATCHDOG_PID` is not a decimal process id.
    WatchdogPid {
        /// The value as found in the environment.
        value: String,
    },
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::SocketNotAbsolute { value } => write!(
                f,
                "{NOTIFY_SOCKET_VAR}={value:?} is neither an absolute path nor an @abstract \
                 socket name"
            ),
            NotifyError::SocketEmptyAbstractName => {
                write!(
                    f,
                    "{NOTIFY_SOCKET_VAR}=\"@\" names an empty abstract socket"
                )
            }
            NotifyError::SocketUnsupportedTransport { value } => write!(
                f,
                "{NOTIFY_SOCKET_VAR}={value:?} uses a transport other than AF_UNIX, which is \
                 not supported"
            ),
            NotifyError::SocketAddress { value, source } => write!(
                f,
                "{NOTIFY_SOCKET_VAR}={value:?} is not a usable Unix socket address: {source}"
            ),
            NotifyError::Socket(source) => {
                write!(f, "cannot create the notification socket: {source}")
            }
            NotifyError::WatchdogUsec { value } => write!(
                f,
                "{WATCHDOG_USEC_VAR}={value:?} is not a whole number of microseconds"
            ),
            NotifyError::WatchdogPid { value } => {
                write!(f, "{WATCHDOG_PID_VAR}={value:?} is not a process id")
            }
        }
    }
}

impl std::error::Error for NotifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NotifyError::SocketAddress { source, .. } | NotifyError::Socket(source) => Some(source),
            _ => None,
        }
    }
}

/// A handle for sending notifications to the service manager.
///
/// The socket is unbound and unconnected: every notification is addressed explicitly, so a
/// manager that re-executes itself (and keeps its socket) is still reached.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` from the process environment.
    ///
    /// Returns `Ok(None)` when the process is not running under a notify-aware manager
    /// (the variable is unset or empty).
    ///
    /// # Errors
    ///
    /// As [`Notifier::from_vars`].
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        let value = std::env::var_os(NOTIFY_SOCKET_VAR);
        Notifier::from_vars(value.as_deref())
    }

    /// Builds a notifier from the value `NOTIFY_SOCKET` would have, without touching the
    /// environment.
    ///
    /// # Errors
    ///
    /// A value that is not an absolute path or an `@` name, a `vsock:` address, an address too
    /// long for `sun_path`, or failure to create the local socket.
    pub fn from_vars(notify_socket: Option<&OsStr>) -> Result<Option<Notifier>, NotifyError> {
        let Some(value) = notify_socket else {
            return Ok(None);
        };
        let bytes = value.as_bytes();
        let addr = match bytes.first() {
            None => return Ok(None),
            Some(b'/') => {
                SocketAddr::from_pathname(value).map_err(|source| NotifyError::SocketAddress {
                    value: value.to_owned(),
                    source,
                })?
            }
            Some(b'@') => {
                let name = &bytes[1..];
                if name.is_empty() {
                    return Err(NotifyError::SocketEmptyAbstractName);
                }
                SocketAddr::from_abstract_name(name).map_err(|source| {
                    NotifyError::SocketAddress {
                        value: value.to_owned(),
                        source,
                    }
                })?
            }
            Some(_) if bytes.starts_with(b"vsock:") => {
                return Err(NotifyError::SocketUnsupportedTransport {
                    value: value.to_owned(),
                })
            }
            Some(_) => {
                return Err(NotifyError::SocketNotAbsolute {
                    value: value.to_owned(),
                })
            }
        };
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        socket
            .set_write_timeout(Some(Duration::from_millis(NOTIFY_SEND_TIMEOUT_MS_MAX)))
            .map_err(NotifyError::Socket)?;
        Ok(Some(Notifier { socket, addr }))
    }

    /// Sends `state` verbatim as one datagram: one or more `VARIABLE=value` lines separated by
    /// `\n`, as sd_notify(3) describes.
    ///
    /// # Errors
    ///
    /// An empty `state` ([`io::ErrorKind::InvalidInput`]); any error from `sendto(2)`, such as
    /// `ENOENT`/`ECONNREFUSED` when nobody listens or a timeout after
    /// [`NOTIFY_SEND_TIMEOUT_MS_MAX`]; a short send, which a datagram socket should never make.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        if state.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty notification state",
            ));
        }
        let sent = self.socket.send_to_addr(state.as_bytes(), &self.addr)?;
        if sent != state.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "notification truncated: sent {sent} of {} bytes",
                    state.len()
                ),
            ));
        }
        Ok(())
    }

    /// Start-up is complete: every shard is serving.
    ///
    /// # Errors
    ///
    /// As [`Notifier::notify`].
    pub fn ready(&self) -> io::Result<()> {
        self.notify("READY=1")
    }

    /// Shutdown has begun.
    ///
    /// # Errors
    ///
    /// As [`Notifier::notify`].
    pub fn stopping(&self) -> io::Result<()> {
        self.notify("STOPPING=1")
    }

    /// Watchdog keep-alive; send at least every [`watchdog_interval`].
    ///
    /// # Errors
    ///
    /// As [`Notifier::notify`].
    pub fn watchdog(&self) -> io::Result<()> {
        self.notify("WATCHDOG=1")
    }

    /// One line of human-readable status for `systemctl status`.
    ///
    /// # Errors
    ///
    /// A `status` containing a newline or NUL ([`io::ErrorKind::InvalidInput`]); otherwise as
    /// [`Notifier::notify`].
    pub fn status(&self, status: &str) -> io::Result<()> {
        check_single_value("STATUS", status)?;
        self.notify(&format!("STATUS={status}"))
    }

    /// Names the process the manager should treat as the service's main process.
    ///
    /// # Errors
    ///
    /// As [`Notifier::notify`].
    pub fn main_pid(&self, pid: u32) -> io::Result<()> {
        self.notify(&format!("MAINPID={pid}"))
    }

    /// Asks the manager to allow `extra` more time before the current start-up or shutdown
    /// timeout fires (for example while the store recovers a long log).
    ///
    /// # Errors
    ///
    /// As [`Notifier::notify`].
    pub fn extend_timeout(&self, extra: Duration) -> io::Result<()> {
        let usec = u64::try_from(extra.as_micros()).unwrap_or(u64::MAX);
        self.notify(&format!("EXTEND_TIMEOUT_USEC={usec}"))
    }
}

/// Refuses values that would end the assignment early: a newline starts a new assignment and
/// a NUL ends the manager's string.
fn check_single_value(variable: &str, value: &str) -> io::Result<()> {
    if value.bytes().any(|b| b == b'\n' || b == 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{variable} value contains a newline or NUL byte"),
        ));
    }
    Ok(())
}

/// Half of `WATCHDOG_USEC` when the watchdog applies to `my_pid`: the interval at which to
/// send [`Notifier::watchdog`] (sd_watchdog_enabled(3) recommends pinging at half the timeout).
///
/// `usec` and `pid` are the values of `WATCHDOG_USEC` and `WATCHDOG_PID`. Returns `Ok(None)`
/// when there is no watchdog: `usec` unset, empty, zero or infinite, or `pid` set to another
/// process. An unset or empty `pid` means the timeout applies to whoever reads it.
///
/// # Errors
///
/// `usec` that is not plain decimal digits fitting a `u64`, or `pid` that is not a non-zero
/// decimal `u32`.
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    my_pid: u32,
) -> Result<Option<Duration>, NotifyError> {
    let Some(usec_text) = usec.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let usec: u64 = parse_decimal(usec_text).ok_or_else(|| NotifyError::WatchdogUsec {
        value: usec_text.to_owned(),
    })?;
    if let Some(pid_text) = pid.filter(|s| !s.is_empty()) {
        let pid: u32 = parse_decimal(pid_text).ok_or_else(|| NotifyError::WatchdogPid {
            value: pid_text.to_owned(),
        })?;
        if pid == 0 {
            return Err(NotifyError::WatchdogPid {
                value: pid_text.to_owned(),
            });
        }
        if pid != my_pid {
            return Ok(None);
        }
    }
    if usec == 0 || usec == WATCHDOG_USEC_INFINITY {
        return Ok(None);
    }
    // At least one microsecond, so a caller never spins on a zero interval.
    Ok(Some(Duration::from_micros((usec / 2).max(1))))
}

/// [`watchdog_interval_from`] applied to this process's environment and pid.
///
/// # Errors
///
/// As [`watchdog_interval_from`]; also a variable that is not valid UTF-8.
pub fn watchdog_interval() -> Result<Option<Duration>, NotifyError> {
    let usec = env_text(WATCHDOG_USEC_VAR).map_err(|value| NotifyError::WatchdogUsec { value })?;
    let pid = env_text(WATCHDOG_PID_VAR).map_err(|value| NotifyError::WatchdogPid { value })?;
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// Reads an environment variable as UTF-8; on failure returns the value lossily converted, for
/// the error message.
fn env_text(variable: &str) -> Result<Option<String>, String> {
    match std::env::var_os(variable) {
        None => Ok(None),
        Some(value) => value
            .into_string()
            .map(Some)
            .map_err(|raw| raw.to_string_lossy().into_owned()),
    }
}

/// Parses plain ASCII decimal digits. Stricter than `str::parse`, which also accepts a leading
/// `+`; the manager only ever writes digits, so anything else is a sign of a broken environment.
fn parse_decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Upper bound on how long a test waits for a datagram, in milliseconds; a missing datagram
    /// fails the test instead of hanging it.
    const RECV_TIMEOUT_MS_MAX: u64 = 2_000;

    static UNIQUE: AtomicU32 = AtomicU32::new(0);

    fn unique_name(tag: &str) -> String {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        format!("imrelay-sd-notify-{tag}-{}-{n}", std::process::id())
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let path = std::env::temp_dir().join(unique_name("dir"));
            std::fs::create_dir(&path).expect("create test directory");
            TempDir(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A manager stand-in: a bound datagram socket and the notifier pointed at it.
    fn listener(dir: &TempDir) -> (UnixDatagram, Notifier) {
        let path = dir.path().join("notify.sock");
        let manager = UnixDatagram::bind(&path).expect("bind manager socket");
        manager
            .set_read_timeout(Some(Duration::from_millis(RECV_TIMEOUT_MS_MAX)))
            .expect("set read timeout");
        let notifier = Notifier::from_vars(Some(path.as_os_str()))
            .expect("valid socket path")
            .expect("socket path is set");
        (manager, notifier)
    }

    fn recv(manager: &UnixDatagram) -> Vec<u8> {
        let mut buf = [0u8; 512];
        let n = manager.recv(&mut buf).expect("datagram from the notifier");
        buf[..n].to_vec()
    }

    #[test]
    fn unset_or_empty_socket_means_no_manager() {
        assert!(Notifier::from_vars(None).unwrap().is_none());
        assert!(Notifier::from_vars(Some(OsStr::new(""))).unwrap().is_none());
    }

    #[test]
    fn path_socket_receives_exact_datagrams() {
        let dir = TempDir::new();
        let (manager, notifier) = listener(&dir);

        notifier.ready().unwrap();
        assert_eq!(recv(&manager), b"READY=1");

        notifier.status("serving 2 shards").unwrap();
        assert_eq!(recv(&manager), b"STATUS=serving 2 shards");

        notifier.watchdog().unwrap();
        assert_eq!(recv(&manager), b"WATCHDOG=1");

        notifier.stopping().unwrap();
        assert_eq!(recv(&manager), b"STOPPING=1");

        notifier.main_pid(4242).unwrap();
        assert_eq!(recv(&manager), b"MAINPID=4242");

        notifier.extend_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(recv(&manager), b"EXTEND_TIMEOUT_USEC=30000000");

        notifier.notify("READY=1\nSTATUS=up").unwrap();
        assert_eq!(recv(&manager), b"READY=1\nSTATUS=up");
    }

    #[test]
    fn abstract_socket_receives_datagrams() {
        let name = unique_name("abstract");
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
        manager
            .set_read_timeout(Some(Duration::from_millis(RECV_TIMEOUT_MS_MAX)))
            .unwrap();

        let value = OsString::from(format!("@{name}"));
        let notifier = Notifier::from_vars(Some(&value)).unwrap().unwrap();
        assert_eq!(
            notifier.addr.as_abstract_name(),
            Some(name.as_bytes()),
            "the @ is replaced by the abstract namespace, not kept in the name"
        );
        notifier.ready().unwrap();
        assert_eq!(recv(&manager), b"READY=1");
        notifier.status("draining").unwrap();
        assert_eq!(recv(&manager), b"STATUS=draining");
    }

    #[test]
    fn status_refuses_a_second_assignment() {
        let dir = TempDir::new();
        let (manager, notifier) = listener(&dir);

        let err = notifier.status("ok\nREADY=1").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = notifier.status("ok\0hidden").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = notifier.notify("").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        // Nothing reached the manager: the next datagram is the one sent now.
        notifier.watchdog().unwrap();
        assert_eq!(recv(&manager), b"WATCHDOG=1");
    }

    #[test]
    fn absent_manager_is_an_error_not_a_panic() {
        let dir = TempDir::new();
        let path = dir.path().join("nobody-listens.sock");
        let notifier = Notifier::from_vars(Some(path.as_os_str()))
            .unwrap()
            .unwrap();
        assert!(notifier.ready().is_err());
    }

    #[test]
    fn relative_and_garbage_sockets_are_rejected() {
        for value in [
            "run/systemd/notify",
            "notify.sock",
            "garbage value",
            "./x",
            "~/s",
        ] {
            let err = Notifier::from_vars(Some(OsStr::new(value))).unwrap_err();
            assert!(
                matches!(&err, NotifyError::SocketNotAbsolute { value: v } if v == value),
                "{value:?} gave {err:?}"
            );
            assert!(err.to_string().contains("NOTIFY_SOCKET"), "{err}");
            assert!(err.to_string().contains(value), "{err}");
        }

        let err = Notifier::from_vars(Some(OsStr::new("@"))).unwrap_err();
        assert!(
            matches!(err, NotifyError::SocketEmptyAbstractName),
            "{err:?}"
        );

        let err = Notifier::from_vars(Some(OsStr::new("vsock:2:1234"))).unwrap_err();
        assert!(
            matches!(err, NotifyError::SocketUnsupportedTransport { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn overlong_socket_path_is_rejected() {
        // sun_path holds 108 bytes including the terminating NUL.
        let long = format!("/{}", "a".repeat(200));
        let err = Notifier::from_vars(Some(OsStr::new(&long))).unwrap_err();
        assert!(matches!(err, NotifyError::SocketAddress { .. }), "{err:?}");
        assert!(std::error::Error::source(&err).is_some());

        let long_abstract = format!("@{}", "b".repeat(200));
        let err = Notifier::from_vars(Some(OsStr::new(&long_abstract))).unwrap_err();
        assert!(matches!(err, NotifyError::SocketAddress { .. }), "{err:?}");
    }

    #[test]
    fn non_utf8_socket_path_is_accepted() {
        use std::os::unix::ffi::OsStringExt;
        let dir = TempDir::new();
        let mut raw = dir.path().as_os_str().as_bytes().to_vec();
        raw.extend_from_slice(b"/n\xffa.sock");
        let path = PathBuf::from(OsString::from_vec(raw));
        let manager = UnixDatagram::bind(&path).unwrap();
        manager
            .set_read_timeout(Some(Duration::from_millis(RECV_TIMEOUT_MS_MAX)))
            .unwrap();
        let notifier = Notifier::from_vars(Some(path.as_os_str()))
            .unwrap()
            .unwrap();
        notifier.ready().unwrap();
        assert_eq!(recv(&manager), b"READY=1");
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout() {
        let me = 1234;
        assert_eq!(
            watchdog_interval_from(Some("10000000"), None, me).unwrap(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            watchdog_interval_from(Some("10000000"), Some("1234"), me).unwrap(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            watchdog_interval_from(Some("3"), Some(""), me).unwrap(),
            Some(Duration::from_micros(1))
        );
        assert_eq!(
            watchdog_interval_from(Some("1"), None, me).unwrap(),
            Some(Duration::from_micros(1)),
            "never a zero interval"
        );
    }

    #[test]
    fn watchdog_for_another_pid_is_not_ours() {
        assert_eq!(
            watchdog_interval_from(Some("10000000"), Some("999"), 1234).unwrap(),
            None
        );
    }

    #[test]
    fn watchdog_absent_zero_or_infinite_is_off() {
        assert_eq!(watchdog_interval_from(None, None, 1).unwrap(), None);
        assert_eq!(watchdog_interval_from(None, Some("1"), 1).unwrap(), None);
        assert_eq!(watchdog_interval_from(Some(""), None, 1).unwrap(), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 1).unwrap(), None);
        let infinity = u64::MAX.to_string();
        assert_eq!(
            watchdog_interval_from(Some(&infinity), None, 1).unwrap(),
            None
        );
    }

    #[test]
    fn watchdog_bad_numbers_are_errors() {
        for bad in ["ten", "-1", "+5", " 5", "5s", "1.5", "18446744073709551616"] {
            let err = watchdog_interval_from(Some(bad), None, 1).unwrap_err();
            assert!(
                matches!(&err, NotifyError::WatchdogUsec { value } if value == bad),
                "{bad:?} gave {err:?}"
            );
            assert!(err.to_string().contains("WATCHDOG_USEC"), "{err}");
        }
        for bad in ["me", "-1", "0", "4294967296", "12 "] {
            let err = watchdog_interval_from(Some("1000"), Some(bad), 1).unwrap_err();
            assert!(
                matches!(&err, NotifyError::WatchdogPid { value } if value == bad),
                "{bad:?} gave {err:?}"
            );
            assert!(err.to_string().contains("WATCHDOG_PID"), "{err}");
        }
    }

    #[test]
    fn temp_dirs_are_cleaned_up() {
        let path = {
            let dir = TempDir::new();
            let _ = listener(&dir);
            dir.path().to_path_buf()
        };
        assert!(!path.exists());
    }
}
