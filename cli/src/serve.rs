//! `eddy serve`: load the configuration, open the broker (creating the bootstrap user of
//! `EDDY_BOOTSTRAP_USER`), serve until SIGINT or SIGTERM, then finish in-flight requests, flush
//! every partition and exit 0.
//!
//! TLS (`[tls]`, `--tls-cert`, `--tls-key`, `--tls-client-ca`): the files are read and checked
//! before anything is bound, so a bad file stops the start with an error naming it. SIGHUP reads
//! them again: new connections get the new certificate, key and client CA, open ones carry on;
//! a reload that fails keeps the configuration in force and logs an error naming the file. Each
//! reload prints one line, `eddy tls reloaded` or `eddy tls reload failed: ...`.
//!
//! The HTTP listener (eddy-http: metrics, health, the console) is bound first and runs on a
//! thread and runtime of its own, so `/health` answers and `/ready` says "opening" while the
//! broker recovers, and no HTTP client can take the native or Kafka listeners' threads.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use eddy_broker::config::Listen;
use eddy_broker::security::tls::{ServerTls, TlsListener};
use eddy_broker::{Broker, BrokerConfig, kafka, now_ms, server};
use tokio::net::{TcpListener, TcpSocket};

pub fn run(parser: &mut lexopt::Parser) -> Result<()> {
    use lexopt::prelude::*;
    let (mut data_dir, mut listen, mut config_file) = (None, None, None);
    let (mut kafka_listen, mut http_listen) = (None, None);
    let (mut tls_cert, mut tls_key, mut tls_client_ca) = (None, None, None);
    let mut insecure = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("tls-cert") => tls_cert = Some(PathBuf::from(parser.value()?)),
            Long("tls-key") => tls_key = Some(PathBuf::from(parser.value()?)),
            Long("tls-client-ca") => tls_client_ca = Some(PathBuf::from(parser.value()?)),
            Long("data-dir") => data_dir = Some(PathBuf::from(parser.value()?)),
            Long("listen") => listen = Some(parser.value()?.string()?),
            Long("kafka-listen") => kafka_listen = Some(parser.value()?.string()?),
            Long("http-listen") => http_listen = Some(parser.value()?.string()?),
            Long("config") => config_file = Some(PathBuf::from(parser.value()?)),
            Long("insecure") => insecure = true,
            other => return Err(other.unexpected().into()),
        }
    }
    let mut config = BrokerConfig::load(config_file.as_deref(), |k| std::env::var(k).ok())?;
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    if let Some(addr) = listen {
        config.listen = addr.parse().with_context(|| format!("--listen {addr:?}"))?;
    }
    if let Some(addr) = kafka_listen {
        config.kafka_listen =
            addr.parse().with_context(|| format!("--kafka-listen {addr:?} (host:port or off)"))?;
    }
    if let Some(addr) = http_listen {
        config.http_listen =
            addr.parse().with_context(|| format!("--http-listen {addr:?} (host:port or off)"))?;
    }
    for (flag, slot) in [
        (tls_cert, &mut config.tls.cert_file),
        (tls_key, &mut config.tls.key_file),
        (tls_client_ca, &mut config.tls.client_ca_file),
    ] {
        if flag.is_some() {
            *slot = flag;
        }
    }
    config.insecure |= insecure;
    config.validate()?;
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(config))
}

/// How many connections each listener's accept queue holds: Linux's usual `somaxconn`, above
/// tokio's 1,024 and std's 128, so that in a burst of connections (a flood's included) the
/// kernel does not drop the SYNs of clients arriving beside it — a dropped SYN costs a client
/// TCP's one-second retry (docs/benchmarks.md, "Connection floods"). The kernel caps it at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `at` with [`LISTEN_BACKLOG`]; inside the runtime.
fn bind(at: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if at.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(at)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn serve(config: BrokerConfig) -> Result<()> {
    let maintenance_every = Duration::from_millis(config.maintenance_interval_ms);
    let tls = ServerTls::load(&config.tls)?;
    // Watched from before the listeners are bound, so a SIGHUP sent once they are (once the
    // broker has printed its address) never meets SIGHUP's default action, which ends the process.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("watching for SIGHUP")?;
    let tls_for = |listener| tls.clone().filter(|t| t.serves(listener));
    let http = match config.http_listen {
        Listen::Off => None,
        Listen::At(at) => Some(Http::start(at, tls_for(TlsListener::Http), config.auth.enabled)?),
    };
    let broker = Broker::open_with(config.clone())
        .with_context(|| format!("opening {}", config.data_dir.display()))?;
    bootstrap_user(&broker).await?;
    if let Some(http) = &http {
        http.app.set_broker(broker.clone());
    }
    let kafka = match config.kafka_listen {
        Listen::Off => None,
        Listen::At(at) => {
            let listener = bind(at).with_context(|| format!("binding the Kafka listener {at}"))?;
            let bound = listener.local_addr()?;
            let advertised = kafka::Advertised::resolve(config.kafka_advertised.as_deref(), bound);
            say(&format!("eddy kafka listening on {bound}"));
            Some((listener, advertised))
        }
    };
    let listener = bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    // A line for people and for scripts (and tests) that started the broker on port 0; the
    // last line printed at start, once every listener is bound.
    say(&format!("eddy listening on {addr}"));
    let maintenance = tokio::spawn(maintain(broker.clone(), maintenance_every));
    let reloads = tokio::spawn(reload_on_sighup(tls.clone(), hangups));
    let (stop_kafka, kafka_stopped) = tokio::sync::oneshot::channel::<()>();
    let kafka = kafka.map(|(listener, advertised)| {
        let stopped = async move {
            let _ = kafka_stopped.await;
        };
        let tls = tls_for(TlsListener::Kafka);
        tokio::spawn(kafka::serve_with(broker.clone(), listener, advertised, tls, stopped))
    });
    let native_tls = tls_for(TlsListener::Native);
    server::serve_with(broker.clone(), listener, native_tls, shutdown_signal()).await?;
    let _ = stop_kafka.send(());
    if let Some(kafka) = kafka {
        kafka.await??;
    }
    maintenance.abort();
    reloads.abort();
    if let Some(http) = http {
        http.stop().await;
    }
    let closing = broker.clone();
    tokio::task::spawn_blocking(move || closing.close()).await??;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// `EDDY_BOOTSTRAP_USER=NAME:PASSWORD` creates that user unless it exists (as Redpanda's
/// `RP_BOOTSTRAP_USER`), so a fresh broker with authentication on can be reached; its password
/// is never logged.
async fn bootstrap_user(broker: &Broker) -> Result<()> {
    if let Ok(value) = std::env::var("EDDY_BOOTSTRAP_USER") {
        let Some((name, password)) = value.split_once(':') else {
            anyhow::bail!("EDDY_BOOTSTRAP_USER must be NAME:PASSWORD");
        };
        let created = broker
            .users()
            .ensure(name, password)
            .await
            .context("creating the bootstrap user (EDDY_BOOTSTRAP_USER)")?;
        tracing::info!(user = name, created, "bootstrap user");
    }
    if broker.config().auth.enabled && broker.users().list().is_empty() {
        tracing::warn!(
            "authentication is enabled and there are no users: no client can connect \
             (set EDDY_BOOTSTRAP_USER=NAME:PASSWORD and restart)"
        );
    }
    Ok(())
}

/// The HTTP listener on its own thread and runtime.
struct Http {
    app: eddy_http::App,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Http {
    /// Binds `at` (printing the address) and starts serving; the API answers "opening" until
    /// the broker is set.
    fn start(
        at: std::net::SocketAddr,
        tls: Option<ServerTls>,
        auth_required: bool,
    ) -> Result<Http> {
        // Bound here, in the broker's runtime; served on the HTTP listener's own runtime.
        let listener = bind(at)
            .and_then(TcpListener::into_std)
            .with_context(|| format!("binding the HTTP listener {at}"))?;
        say(&format!("eddy http listening on {}", listener.local_addr()?));
        let app = eddy_http::App::new(eddy_http::HttpLimits::default());
        app.set_auth_required(auth_required);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the HTTP runtime")?;
        let serving = app.clone();
        let thread = std::thread::Builder::new().name("eddy-http".into()).spawn(move || {
            let served = runtime.block_on(async move {
                let listener = TcpListener::from_std(listener)?;
                eddy_http::serve_with(serving, listener, tls, async move {
                    let _ = stopped.await;
                })
                .await
            });
            if let Err(e) = served {
                tracing::error!(error = %e, "the HTTP listener stopped");
            }
        })?;
        Ok(Http { app, stop, thread })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

fn say(line: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout(), format!("{line}\n").as_bytes());
}

async fn maintain(broker: Broker, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || b.run_maintenance(now_ms())).await;
    }
}

/// Reloads the TLS files on each SIGHUP (and says so on stdout); without TLS a SIGHUP is logged
/// and ignored rather than ending the process.
async fn reload_on_sighup(tls: Option<ServerTls>, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        let Some(tls) = &tls else {
            tracing::info!("SIGHUP received: no TLS configured, nothing to reload");
            continue;
        };
        let reloading = tls.clone();
        match tokio::task::spawn_blocking(move || reloading.reload()).await {
            Ok(Ok(())) => {
                tracing::info!("SIGHUP received: TLS certificate, key and client CA reloaded");
                say("eddy tls reloaded");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "SIGHUP received: TLS reload failed; keeping the configuration in force");
                say(&format!("eddy tls reload failed: {e}"));
            }
            Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

pub(crate) fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("EDDY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}
