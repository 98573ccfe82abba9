//! The `imrelay` command: parses arguments and hands over to the library. No logic here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use imrelay::config::{Config, Cores, Overrides};

#[derive(Parser)]
#[command(
    name = "imrelay",
    version,
    about = "SIP/SIMPLE instant-messaging appliance with offline store-and-forward"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (every configured role) until SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Inspect the deferred store (run it while the server is stopped, or on a copy).
    Store(StoreArgs),
    /// A small SIP user agent over UDP: register, send pager messages, listen for them.
    Client(ClientArgs),
    /// Load a server with one scenario (open loop at a rate, or session by session) and
    /// report latency percentiles, throughput and the generator's own CPU.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// What to load the server with.
    #[arg(value_enum)]
    scenario: imrelay::loadgen::Scenario,
    /// The server's SIP address.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:5060")]
    server: std::net::SocketAddr,
    /// The users' domain.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Open loop: requests per second (the first step of a ramp).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Requests (open loop) or operations (sessions).
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Session scenarios: message size in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    size: usize,
    /// Distinct users (open loop), or the group's size (group: bytes carried = size × N).
    #[arg(long, default_value_t = imrelay::loadgen::BENCH_USERS_DEFAULT)]
    users: u32,
    /// The group to send to (group scenario); the sender `sip:sender-<run>@<domain>` must be
    /// one of its members.
    #[arg(long, value_name = "URI")]
    group: Option<String>,
    /// Where the generator's sockets bind.
    #[arg(long, default_value = "127.0.0.1")]
    local: std::net::IpAddr,
    /// msrp-auth: the relay's MSRP (TCP) address; --size is the chunk size.
    #[arg(long, value_name = "IP:PORT")]
    msrp: Option<std::net::SocketAddr>,
    /// msrp-auth: the credentials its two clients AUTH with (answering a Digest challenge).
    #[arg(long, value_name = "USER:PASSWORD", default_value = "bench:bench")]
    auth: String,
    /// Rising rates (×1.25 a step of --step-secs) until a rate loses or refuses a request or
    /// falls behind twice in a row; prints each step and the highest clean rate.
    #[arg(long)]
    ramp: bool,
    #[arg(long, default_value_t = 5)]
    step_secs: u64,
    #[arg(long, default_value_t = 200_000)]
    max_rate: u64,
    /// Pin the generator to this CPU (keep it off the server's).
    #[arg(long)]
    cpu: Option<usize>,
    /// The server's process id: its CPU time over the run is reported per request.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the latency distribution (HdrHistogram .hgrm text) here.
    #[arg(long, value_name = "FILE")]
    hgrm: Option<std::path::PathBuf>,
    /// A tag for this run's users and Call-IDs (default: from the time).
    #[arg(long)]
    run: Option<String>,
}

#[derive(Args)]
struct ClientArgs {
    /// The server's SIP address.
    #[arg(
        long,
        value_name = "IP:PORT",
        default_value = "127.0.0.1:5060",
        global = true
    )]
    server: std::net::SocketAddr,
    /// The user this client acts as.
    #[arg(
        long,
        value_name = "URI",
        default_value = "sip:alice@localhost",
        global = true
    )]
    user: String,
    /// Local address to bind (port 0: any free port).
    #[arg(
        long,
        value_name = "IP:PORT",
        default_value = "127.0.0.1:0",
        global = true
    )]
    bind: std::net::SocketAddr,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register this client's address as the user's contact.
    Register {
        /// Seconds the binding should last.
        #[arg(long, default_value_t = 600)]
        expires: u32,
    },
    /// Remove every binding of the user (`Contact: *`).
    Unregister,
    /// Send a message: pager mode (MESSAGE) up to 1300 bytes, session mode (INVITE + MSRP)
    /// above.
    Send {
        /// The recipient, e.g. sip:bob@localhost.
        to: String,
        /// The text to send (or use --file).
        #[arg(required_unless_present = "file")]
        text: Option<String>,
        /// Send this file's bytes instead of TEXT.
        #[arg(long, value_name = "PATH", conflicts_with = "text")]
        file: Option<PathBuf>,
        #[arg(long, default_value = "text/plain;charset=utf-8")]
        content_type: String,
        /// `pager`, `session`, or `auto` (by size).
        #[arg(long, default_value = "auto")]
        mode: SendMode,
        /// MSRP chunk size in bytes (session mode).
        #[arg(long, default_value_t = imrelay::client::SESSION_CHUNK_BYTES)]
        chunk: usize,
    },
    /// Register, print the list of waiting session-mode messages the server sends (and any
    /// pager message delivered meanwhile), then unregister.
    Inbox {
        /// How long to wait for the list, in seconds.
        #[arg(long = "for", default_value_t = 3)]
        seconds: u64,
    },
    /// Register, retrieve waiting session-mode messages (those named, or all) over MSRP and
    /// save each as DIR/<id>, then unregister.
    Fetch {
        /// Message ids (32 hex digits) as `inbox` lists them; none: all.
        ids: Vec<String>,
        /// Directory the messages are saved in.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// The deferred server's URI (default: sip:deferred@<the user's domain>).
        #[arg(long, value_name = "URI")]
        deferred: Option<String>,
    },
    /// Register, print each MESSAGE that arrives (sender, time, text), then unregister.
    Listen {
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds.
        #[arg(long = "for", default_value_t = 60)]
        seconds: u64,
        /// Take sessions the server opens to push messages by listening for its MSRP
        /// connection (`a=setup:passive`) instead of connecting to it.
        #[arg(long)]
        passive: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SendMode {
    Auto,
    Pager,
    Session,
}

#[derive(Args)]
struct StoreArgs {
    /// Configuration file whose `server.state_dir` holds the store.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// State directory (overrides the configuration).
    #[arg(long, value_name = "DIR", global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// List the messages waiting for URI (or, without URI, every recipient with waiting messages).
    List { uri: Option<String> },
    /// Show one stored message: its metadata, then its body on stdout.
    Show { uri: String, id: String },
    /// Totals: recipients, messages, bytes, segments.
    Stats,
    /// Check every segment without changing anything; exit 1 if any is damaged.
    Verify,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file; without it the embedded default is used
    /// (domain localhost, SIP on 127.0.0.1:5060 UDP and TCP, every role).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// SIP listen address for UDP and TCP (port 0 picks a free port).
    #[arg(long, value_name = "IP:PORT")]
    sip_addr: Option<std::net::SocketAddr>,
    /// MSRP base port: shard i listens on PORT + i.
    #[arg(long, value_name = "PORT")]
    msrp_port: Option<u16>,
    /// Directory for the deferred store and other state.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// CPUs to run shards on: `all`, a count, or a list like `0,2-3`.
    #[arg(long, value_name = "N|LIST", value_parser = Cores::parse_flag)]
    cores: Option<Cores>,
    /// The SIP domain served (replaces the configured domains).
    #[arg(long, value_name = "NAME")]
    domain: Option<String>,
    /// Validate the configuration, print the effective configuration as TOML, and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Store(args) => imrelay::admin::store(
            args.config.as_deref(),
            args.state_dir.as_deref(),
            match args.command {
                StoreCommand::List { uri } => imrelay::admin::StoreCommand::List(uri),
                StoreCommand::Show { uri, id } => imrelay::admin::StoreCommand::Show(uri, id),
                StoreCommand::Stats => imrelay::admin::StoreCommand::Stats,
                StoreCommand::Verify => imrelay::admin::StoreCommand::Verify,
            },
        ),
        Command::Client(args) => client(args),
        Command::Bench(args) => bench(args),
    }
}

fn bench(args: BenchArgs) -> ExitCode {
    use imrelay::loadgen;
    if let Some(cpu) = args.cpu {
        if !loadgen::pin_to(cpu) {
            eprintln!("imrelay bench: cannot pin to CPU {cpu}; running unpinned");
        }
    }
    let run = args.run.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("{:x}", t % (1 << 40))
    });
    let plan = loadgen::Plan {
        scenario: args.scenario,
        server: args.server,
        domain: args.domain.clone(),
        rate: args.rate,
        count: args.count,
        size: args.size,
        users: args.users,
        local: args.local,
        run,
        group: args.group.clone(),
        msrp: args.msrp,
        auth: match args.auth.split_once(':') {
            Some((u, p)) => (u.to_owned(), p.to_owned()),
            None => {
                eprintln!("imrelay bench: --auth wants USER:PASSWORD");
                return ExitCode::from(2);
            }
        },
    };
    let name = clap::ValueEnum::to_possible_value(&args.scenario)
        .map_or_else(|| "bench".to_owned(), |v| v.get_name().to_owned());
    let server_cpu0 = args.server_pid.and_then(loadgen::pid_cpu);
    let server_cpu = |sent: u64| match (args.server_pid.and_then(loadgen::pid_cpu), server_cpu0) {
        (Some(b), Some(a)) => format!(
            "; server CPU {:.2} s ({:.1} µs per request)",
            b - a,
            (b - a) * 1e6 / sent.max(1) as f64
        ),
        _ => String::new(),
    };
    let result = if args.ramp {
        loadgen::ramp(&plan, args.step_secs, args.max_rate).map(|steps| {
            let mut best = None;
            for (rate, r) in &steps {
                println!("rate {rate}/s: {}", r.summary(&name));
                if r.clean() {
                    best = Some(*rate);
                }
            }
            match best {
                Some(b) => println!("{name}: highest clean rate {b}/s"),
                None => println!("{name}: no clean step (start lower with --rate)"),
            }
            steps
                .into_iter()
                .rev()
                .find(|(_, r)| r.clean())
                .map(|(_, r)| r)
        })
    } else {
        loadgen::run(&plan).map(|r| {
            println!("{}{}", r.summary(&name), server_cpu(r.sent));
            Some(r)
        })
    };
    match result {
        Ok(r) => {
            if let (Some(path), Some(r)) = (&args.hgrm, r) {
                if let Err(e) = std::fs::write(path, loadgen::hgrm(&r.latency_us)) {
                    eprintln!("imrelay bench: {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imrelay bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn client(args: ClientArgs) -> ExitCode {
    use imrelay::client::Client;
    let run = || -> Result<(), imrelay::client::ClientError> {
        let mut c = Client::new(args.server, &args.user, args.bind)?;
        match args.command {
            ClientCommand::Register { expires } => {
                let bindings = c.register(expires)?;
                println!("registered {} at {}", args.user, c.local_addr()?);
                for b in bindings {
                    println!("  binding: {b}");
                }
            }
            ClientCommand::Unregister => {
                c.register(0)?;
                println!("unregistered {} (every binding)", args.user);
            }
            ClientCommand::Send {
                to,
                text,
                file,
                content_type,
                mode,
                chunk,
            } => {
                let body = match (file, text) {
                    (Some(path), _) => std::fs::read(&path).map_err(|e| {
                        imrelay::client::ClientError::Io(std::io::Error::new(
                            e.kind(),
                            format!("{}: {e}", path.display()),
                        ))
                    })?,
                    (None, Some(t)) => t.into_bytes(),
                    (None, None) => Vec::new(),
                };
                let session = match mode {
                    SendMode::Pager => false,
                    SendMode::Session => true,
                    SendMode::Auto => body.len() > imrelay::limits::CLIENT_PAGER_BYTES_MAX,
                };
                if session {
                    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr());
                    let a = c.send_session(&to, &content_type, &body, chunk, |sent, total| {
                        if bar {
                            progress_bar(sent, total);
                        }
                    })?;
                    if bar {
                        eprintln!();
                    }
                    println!(
                        "{} {}: {} bytes sent in session mode and acknowledged",
                        a.code,
                        a.reason,
                        body.len()
                    );
                } else {
                    let a = c.send(&to, &content_type, &body)?;
                    let what = if a.code == 202 {
                        "kept for delivery when the recipient is back"
                    } else {
                        "delivered"
                    };
                    println!("{} {}: {what}", a.code, a.reason);
                }
            }
            ClientCommand::Inbox { seconds } => {
                c.register(300)?;
                let got = c.listen(std::time::Duration::from_secs(seconds), None, |_| {})?;
                c.register(0)?;
                let mut waiting = 0usize;
                for m in &got {
                    let is_list = m.content_type.as_deref().is_some_and(|t| {
                        t.eq_ignore_ascii_case(imrelay::deferred_list::CONTENT_TYPE)
                    });
                    if !is_list {
                        println!(
                            "pager message from {}: {}",
                            m.from,
                            String::from_utf8_lossy(&m.body)
                        );
                        continue;
                    }
                    let list = imrelay::deferred_list::parse(&m.body)
                        .map_err(|e| imrelay::client::ClientError::Garbled(e.to_string()))?;
                    for e in list {
                        waiting += 1;
                        println!(
                            "{}  {}  {:>10} B  {}  from {}  (expires {})",
                            e.id, e.stored, e.size, e.content_type, e.from, e.expires
                        );
                    }
                }
                println!("{waiting} session-mode message(s) waiting");
            }
            ClientCommand::Fetch { ids, out, deferred } => {
                let ids = ids
                    .iter()
                    .map(|i| {
                        i.parse::<imrelay::store::record::MessageId>().map_err(|_| {
                            imrelay::client::ClientError::Garbled(format!(
                                "{i:?} is not a message id (32 hex digits)"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let domain = args.user.rsplit('@').next().unwrap_or("localhost");
                let deferred = deferred.unwrap_or_else(|| format!("sip:deferred@{domain}"));
                c.register(300)?;
                let mut saved = Vec::new();
                let mut listed = 0usize;
                // A retrieval sends at most DEFERRED_RETRIEVAL_MESSAGES_MAX: again for more.
                let fetched = loop {
                    let before = saved.len();
                    let round = c.fetch(&deferred, &ids, |m| {
                        let path = out.join(&m.id);
                        match std::fs::write(&path, &m.body) {
                            Ok(()) => println!(
                                "{}  from {}  stored {}  {} B  {} -> {}",
                                m.id,
                                m.from,
                                m.date_time,
                                m.body.len(),
                                m.content_type,
                                path.display()
                            ),
                            Err(e) => eprintln!("imrelay client: {}: {e}", path.display()),
                        }
                        saved.push(path);
                    });
                    match round {
                        // Again while full rounds bring messages (one that brings none —
                        // a message the server cannot send — ends it).
                        Ok(list)
                            if list.len() >= imrelay::limits::DEFERRED_RETRIEVAL_MESSAGES_MAX
                                && ids.is_empty()
                                && saved.len() > before =>
                        {
                            listed += list.len()
                        }
                        Ok(list) => break Ok(listed + list.len()),
                        Err(e) => break Err(e),
                    }
                };
                let unregistered = c.register(0);
                let listed = fetched?;
                unregistered?;
                println!("{} of {listed} message(s) retrieved", saved.len());
            }
            ClientCommand::Listen {
                count,
                seconds,
                passive,
            } => {
                c.passive_msrp = passive;
                c.register(600)?;
                println!("listening as {} at {}", args.user, c.local_addr()?);
                let got = c.listen(std::time::Duration::from_secs(seconds), count, |m| {
                    println!(
                        "from {}{}: {}",
                        m.from,
                        m.date
                            .as_deref()
                            .map(|d| format!(" (sent {d})"))
                            .unwrap_or_default(),
                        shown(&m.body, m.content_type.as_deref())
                    );
                })?;
                c.register(0)?;
                println!("{} message(s)", got.len());
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imrelay client: {e}");
            ExitCode::from(1)
        }
    }
}

/// A body as `listen` prints it: text up to the pager size, else its size and type.
fn shown(body: &[u8], content_type: Option<&str>) -> String {
    match std::str::from_utf8(body) {
        Ok(t) if body.len() <= imrelay::limits::CLIENT_PAGER_BYTES_MAX => t.to_owned(),
        _ => format!(
            "<{} bytes of {}>",
            body.len(),
            content_type.unwrap_or("application/octet-stream")
        ),
    }
}

/// A one-line progress bar on stderr.
fn progress_bar(sent: u64, total: u64) {
    const WIDTH: u64 = 40;
    let filled = (sent * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let bar: String = (0..WIDTH)
        .map(|i| if i < filled { '#' } else { '.' })
        .collect();
    eprint!(
        "\r[{bar}] {:>6.1} / {:.1} MiB",
        sent as f64 / 1048576.0,
        total as f64 / 1048576.0
    );
}

fn serve(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        sip_addr: args.sip_addr,
        msrp_port: args.msrp_port,
        state_dir: args.state_dir,
        cores: args.cores,
        domain: args.domain,
    };
    let state_directory = std::env::var("STATE_DIRECTORY").ok();
    let cfg = match Config::load(
        args.config.as_deref(),
        &overrides,
        state_directory.as_deref(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imrelay: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        print!("{}", cfg.to_toml());
        return ExitCode::SUCCESS;
    }
    init_logging(&cfg.log.level);
    let reload = || {
        Config::load(
            args.config.as_deref(),
            &overrides,
            state_directory.as_deref(),
        )
    };
    match imrelay::runtime::serve_with_reload(&cfg, Some(&reload)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imrelay: cannot start: {e}");
            ExitCode::from(1)
        }
    }
}

/// Structured logs on stderr; `RUST_LOG` overrides the configured level.
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
