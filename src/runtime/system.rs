//! Facts about the host the runtime needs before it starts executors: which CPUs this process
//! may use, whether io_uring buffers can be locked in memory, and startup errors that say
//! exactly what to do.

use std::fmt;
use std::net::SocketAddr;

/// The smallest RLIMIT_MEMLOCK with which a glommio executor starts at all (below it the
/// executor fails; above it but below ~3 × io_memory it runs without registered buffers).
pub const MEMLOCK_BYTES_MIN: u64 = 512 * 1024;

/// Why `imrelay serve` could not start, each with the fix.
#[derive(Debug)]
pub enum StartError {
    Config(crate::config::ConfigError),
    AddressInUse {
        what: &'static str,
        addr: SocketAddr,
    },
    AddressNotAvailable {
        what: &'static str,
        addr: SocketAddr,
    },
    PermissionDenied {
        what: &'static str,
        addr: SocketAddr,
    },
    Bind {
        what: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
    MemlockTooLow {
        limit: u64,
    },
    IoUringUnavailable {
        detail: String,
    },
    Executor {
        shard: usize,
        cpu: usize,
        detail: String,
    },
    StateDir {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    /// The deferred store under the state directory cannot be opened or recovered.
    Store {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    Cpus(std::io::Error),
    Signals(std::io::Error),
    Notify(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use StartError::*;
        match self {
            Config(e) => write!(f, "configuration: {e}"),
            AddressInUse { what, addr } => write!(
                f,
                "{what} address {addr} is already in use: stop the other server on that port \
                 (e.g. `ss -lunpt | grep :{port}`) or choose another with --sip-addr / --msrp-port",
                port = addr.port()
            ),
            AddressNotAvailable { what, addr } => write!(
                f,
                "{what} address {addr} is not an address of this machine: use one of its own \
                 addresses (`ip -brief address`) or 0.0.0.0"
            ),
            PermissionDenied { what, addr } => write!(
                f,
                "{what} address {addr}: permission denied; ports below 1024 need root or \
                 CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE)"
            ),
            Bind { what, addr, error } => write!(f, "cannot listen for {what} on {addr}: {error}"),
            MemlockTooLow { limit } => write!(
                f,
                "the locked-memory limit is {limit} bytes; io_uring executors need at least \
                 {MEMLOCK_BYTES_MIN} (more for registered buffers). Raise it: `ulimit -l unlimited` \
                 in a shell, `LimitMEMLOCK=infinity` in the systemd unit, or grant CAP_IPC_LOCK"
            ),
            IoUringUnavailable { detail } => write!(
                f,
                "io_uring is unavailable ({detail}): imrelay needs Linux >= 5.8 with io_uring \
                 enabled (check `sysctl kernel.io_uring_disabled` is 0 and that no seccomp \
                 profile or container runtime blocks io_uring_setup)"
            ),
            Executor { shard, cpu, detail } => {
                write!(f, "shard {shard} on CPU {cpu} failed to start: {detail}")
            }
            StateDir { path, error } => write!(
                f,
                "cannot create the state directory {}: {error} (choose one with --state-dir)",
                path.display()
            ),
            Store { path, error } => write!(
                f,
                "cannot open the message store under {}: {error} (`imrelay store verify \
                 --state-dir {}` checks it without changing it)",
                path.display(),
                path.display()
            ),
            Cpus(e) => write!(f, "cannot read the CPUs this process may use: {e}"),
            Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            Notify(e) => write!(f, "systemd notification socket: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Maps a bind failure to the error that says what to do.
pub fn bind_error(what: &'static str, addr: SocketAddr, error: std::io::Error) -> StartError {
    match error.raw_os_error() {
        Some(libc::EADDRINUSE) => StartError::AddressInUse { what, addr },
        Some(libc::EADDRNOTAVAIL) => StartError::AddressNotAvailable { what, addr },
        Some(libc::EACCES) | Some(libc::EPERM) => StartError::PermissionDenied { what, addr },
        _ => StartError::Bind { what, addr, error },
    }
}

/// Classifies an executor start failure: io_uring refusals get their own advice.
pub fn executor_error(shard: usize, cpu: usize, detail: String) -> StartError {
    let lower = detail.to_ascii_lowercase();
    if lower.contains("memlock")
        || lower.contains("locked memory")
        || lower.contains("cannot allocate memory")
    {
        return StartError::MemlockTooLow {
            limit: memlock_limit().unwrap_or(0),
        };
    }
    if lower.contains("function not implemented")
        || lower.contains("operation not permitted")
        || lower.contains("io_uring")
    {
        return StartError::IoUringUnavailable { detail };
    }
    StartError::Executor { shard, cpu, detail }
}

/// The CPUs this process may run on (its affinity mask), ascending.
pub fn allowed_cpus() -> Result<Vec<usize>, StartError> {
    // SAFETY: `cpu_set_t` is plain data; zeroed is a valid empty set, and sched_getaffinity
    // writes at most `size_of::<cpu_set_t>()` bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 means this thread; the pointer and size describe `set`.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(StartError::Cpus(std::io::Error::last_os_error()));
    }
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the capacity of `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    Ok(cpus)
}

/// RLIMIT_MEMLOCK's soft limit in bytes (`u64::MAX` for unlimited).
pub fn memlock_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    (rc == 0).then_some(if lim.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        lim.rlim_cur
    })
}

/// `true` when the effective capability set holds CAP_IPC_LOCK (locked memory is then not
/// charged to RLIMIT_MEMLOCK).
pub fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Refuses to start when executors could not start for lack of lockable memory.
pub fn check_memlock() -> Result<(), StartError> {
    if has_cap_ipc_lock() {
        return Ok(());
    }
    match memlock_limit() {
        Some(limit) if limit < MEMLOCK_BYTES_MIN => Err(StartError::MemlockTooLow { limit }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpus() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn bind_errors_say_what_to_do() {
        let addr: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let e = bind_error(
            "SIP",
            addr,
            std::io::Error::from_raw_os_error(libc::EADDRINUSE),
        );
        assert!(e.to_string().contains("already in use"), "{e}");
        let e = bind_error(
            "SIP",
            addr,
            std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
        );
        assert!(
            e.to_string().contains("not an address of this machine"),
            "{e}"
        );
        let e = bind_error("SIP", addr, std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(e.to_string().contains("CAP_NET_BIND_SERVICE"), "{e}");
    }

    #[test]
    fn executor_errors_are_classified() {
        assert!(matches!(
            executor_error(0, 0, "Function not implemented (os error 38)".into()),
            StartError::IoUringUnavailable { .. }
        ));
        assert!(matches!(
            executor_error(0, 0, "Cannot allocate memory (os error 12)".into()),
            StartError::MemlockTooLow { .. }
        ));
        assert!(matches!(
            executor_error(1, 1, "something else".into()),
            StartError::Executor {
                shard: 1,
                cpu: 1,
                ..
            }
        ));
        let e = StartError::MemlockTooLow { limit: 65536 };
        assert!(e.to_string().contains("LimitMEMLOCK=infinity"), "{e}");
    }
}
