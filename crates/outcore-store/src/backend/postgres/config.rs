//! Where and how to connect to PostgreSQL, the way libpq does it: a `postgresql://` URL whose
//! missing parts come from `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, then
//! `PGPASSFILE`/`~/.pgpass`; TLS from `sslmode` (`disable`, `allow`, `prefer` (default),
//! `require`, `verify-ca`, `verify-full`), `sslrootcert`, `sslcert`, `sslkey` (or `PGSSLMODE`,
//! `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`).
//!
//! As in libpq, `prefer` and `require` encrypt without verifying the server, unless a root
//! certificate is given (then `require` verifies like `verify-ca`). `verify-ca` checks the
//! certificate chain, `verify-full` also the host name. Without `sslrootcert` the verifying modes
//! use `~/.postgresql/root.crt` if it exists, else the system's trusted roots.
//!
//! Waits are bounded (see `pg_client`): `connect_timeout` (seconds, or `PGCONNECT_TIMEOUT`;
//! default 10) bounds the whole connection start, not only the socket's; outcore's own
//! `io_timeout` (seconds, default 60) bounds every later wait for the server. outcore's
//! `group_commit` (`on`, the default, or `off`) says whether small commits join the machine's
//! group commit (see `group`). TCP keepalives
//! are on with libpq's parameters (`keepalives_idle`, `keepalives_interval`,
//! `keepalives_retries`; defaults here 15 s, 5 s, 3 probes instead of the system's two hours) and
//! `tcp_user_timeout` defaults to 30 s, so a dead peer is noticed within about half a minute.

use super::tls::MakeTlsConnector;
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::Config;

/// Default bound of a connection start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound of any other wait for the server.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// libpq's TLS modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn describe(self) -> &'static str {
        match self {
            TlsMode::Disable => "sslmode=disable",
            TlsMode::Prefer => "sslmode=prefer",
            TlsMode::Require => "sslmode=require",
            TlsMode::VerifyCa => "sslmode=verify-ca",
            TlsMode::VerifyFull => "sslmode=verify-full",
        }
    }
}

/// A parsed connection target.
pub(crate) struct Target {
    pub config: Config,
    pub location: String,
    pub tls: TlsMode,
    pub connector: MakeTlsConnector,
    /// Bound of a whole connection start.
    pub connect_timeout: Duration,
    /// Bound of every other wait for the server.
    pub io_timeout: Duration,
    /// Small commits join the machine's group commit (`group_commit=on`, the default; `off`,
    /// or `OUTCORE_PG_GROUP_COMMIT=0` in the environment: each commit goes alone).
    pub group_commit: bool,
}

impl Target {
    /// What names the database (hosts, ports, database, user) whatever the other parameters:
    /// the processes committing to it group their commits under this key.
    pub fn database_key(&self) -> String {
        let c = &self.config;
        format!("{:?}|{:?}|{:?}|{:?}", c.get_hosts(), c.get_ports(), c.get_dbname(), c.get_user())
    }
}

impl Target {
    /// The error for a failed connection start.
    pub fn connect_error(&self, e: &tokio_postgres::Error) -> Error {
        let location = self.location.clone();
        let reason = format!("cannot connect ({}): {}", self.tls.describe(), crate::error::with_causes(e));
        if transient(e) {
            Error::Unreachable { location, reason }
        } else {
            Error::BadLocation { location, reason }
        }
    }
}

/// Whether a failed connection attempt may succeed later: the server refused, timed out, reset
/// the connection, or said it is starting up, shutting down or out of connection slots (and
/// not: bad credentials, an unknown database, a certificate that does not verify).
pub(crate) fn transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::TimedOut
                    | K::BrokenPipe
                    | K::UnexpectedEof
                    | K::Interrupted
            );
        }
        cur = c.source();
    }
    // The client's own connect timeout says "timeout" without an I/O error.
    e.to_string().contains("timeout")
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// Parse `url` into a connection target.
pub(crate) fn parse(url: &str) -> Result<Target> {
    let location = redact(url);
    let bad = |reason: String| Error::BadLocation { location: location.clone(), reason };
    // Take the TLS parameters out: the driver only knows some of them.
    let mut u = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
    let (mut mode, mut rootcert, mut cert, mut key, mut io_timeout) = (None, None, None, None, None);
    let mut group_commit = None;
    let rest: Vec<(String, String)> = u
        .query_pairs()
        .filter_map(|(k, v)| {
            match k.as_ref() {
                "sslmode" => mode = Some(v.to_string()),
                "sslrootcert" => rootcert = Some(v.to_string()),
                "sslcert" => cert = Some(v.to_string()),
                "sslkey" => key = Some(v.to_string()),
                "io_timeout" => io_timeout = Some(v.to_string()),
                "group_commit" => group_commit = Some(v.to_string()),
                _ => return Some((k.to_string(), v.to_string())),
            }
            None
        })
        .collect();
    let given = |name: &str| rest.iter().any(|(k, _)| k == name);
    let (idle_given, interval_given, retries_given, user_timeout_given) = (
        given("keepalives_idle"),
        given("keepalives_interval"),
        given("keepalives_retries"),
        given("tcp_user_timeout"),
    );
    let seconds = |name: &str, v: &str| -> Result<Duration> {
        match v.trim().parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
            _ => Err(bad(format!("{name}={v} is not a positive number of seconds"))),
        }
    };
    let io_timeout = match io_timeout {
        Some(v) => seconds("io_timeout", &v)?,
        None => IO_TIMEOUT,
    };
    let group_commit = match group_commit.as_deref() {
        None | Some("on") => std::env::var("OUTCORE_PG_GROUP_COMMIT").map_or(true, |v| v != "0"),
        Some("off") => false,
        Some(v) => return Err(bad(format!("group_commit={v} is neither on nor off"))),
    };
    if rest.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(rest);
    }
    let mode = mode.or_else(|| env("PGSSLMODE"));
    let tls = match mode.as_deref().unwrap_or("prefer") {
        "disable" => TlsMode::Disable,
        "allow" | "prefer" => TlsMode::Prefer,
        "require" => TlsMode::Require,
        "verify-ca" => TlsMode::VerifyCa,
        "verify-full" => TlsMode::VerifyFull,
        other => return Err(bad(format!("unknown sslmode '{other}'"))),
    };
    let rootcert = rootcert.or_else(|| env("PGSSLROOTCERT")).map(PathBuf::from);
    let cert = cert.or_else(|| env("PGSSLCERT")).map(PathBuf::from);
    let key = key.or_else(|| env("PGSSLKEY")).map(PathBuf::from);

    let mut config: Config =
        u.as_str().parse().map_err(|e: tokio_postgres::Error| bad(crate::error::with_causes(&e)))?;
    let connect_timeout = match (config.get_connect_timeout(), env("PGCONNECT_TIMEOUT")) {
        (Some(t), _) if !t.is_zero() => *t,
        (None, Some(v)) => seconds("PGCONNECT_TIMEOUT", &v)?,
        // libpq's 0 means "wait forever"; here nothing waits forever.
        _ => CONNECT_TIMEOUT,
    };
    config.connect_timeout(connect_timeout);
    config.keepalives(true);
    if !idle_given {
        config.keepalives_idle(Duration::from_secs(15));
    }
    if !interval_given {
        config.keepalives_interval(Duration::from_secs(5));
    }
    if !retries_given {
        config.keepalives_retries(3);
    }
    if !user_timeout_given {
        config.tcp_user_timeout(Duration::from_secs(30));
    }
    if config.get_hosts().is_empty() {
        match env("PGHOST") {
            Some(h) if h.starts_with('/') => {
                config.host_path(h);
            }
            Some(h) => {
                config.host(&h);
            }
            None if std::path::Path::new("/var/run/postgresql").is_dir() => {
                config.host_path("/var/run/postgresql");
            }
            None => {
                config.host("localhost");
            }
        }
    }
    if config.get_ports().is_empty() {
        if let Some(p) = env("PGPORT") {
            config.port(p.parse().map_err(|_| bad(format!("PGPORT={p} is not a port number")))?);
        }
    }
    if config.get_user().is_none() {
        let user =
            env("PGUSER").or_else(|| env("USER")).ok_or_else(|| bad("no user in the URL, PGUSER or USER".into()))?;
        config.user(&user);
    }
    if config.get_dbname().is_none() {
        if let Some(db) = env("PGDATABASE") {
            config.dbname(&db);
        }
    }
    if config.get_password().is_none() {
        if let Some(pw) = env("PGPASSWORD").or_else(|| pgpass_lookup(&config)) {
            config.password(pw);
        }
    }
    config.ssl_mode(match tls {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    let connector = connector(tls, rootcert, cert, key).map_err(|e| bad(format!("TLS set-up: {e}")))?;
    Ok(Target { config, location, tls, connector, connect_timeout, io_timeout, group_commit })
}

/// The TLS connector for `mode` (rustls; see `pg_tls`).
fn connector(
    mode: TlsMode,
    rootcert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> std::result::Result<MakeTlsConnector, String> {
    super::tls::connector(mode, rootcert, cert, key)
}

/// The password for `config` from `PGPASSFILE` or `~/.pgpass` (`host:port:db:user:password`,
/// `*` matches anything), as libpq reads it.
fn pgpass_lookup(config: &Config) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    pgpass_match(&std::fs::read_to_string(path).ok()?, config)
}

/// The password of the first `.pgpass` line matching `config`.
fn pgpass_match(text: &str, config: &Config) -> Option<String> {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or_default();
    let db = config.get_dbname().unwrap_or(user);
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let fields = split_pgpass(line);
        if fields.len() != 5 {
            continue;
        }
        let ok = |f: &str, v: &str| f == "*" || f == v;
        if ok(&fields[0], &host) && ok(&fields[1], &port) && ok(&fields[2], db) && ok(&fields[3], user) {
            return Some(fields[4].clone());
        }
    }
    None
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(last)) = (chars.next(), out.last_mut()) {
                    last.push(n);
                }
            }
            ':' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

/// The URL with its password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let text = "# comment\nother:5432:*:bob:nope\n127.0.0.1:*:mydb:bob:s\\:cr\\\\et\n*:*:*:*:fallback\n";
        let c: Config = "postgresql://bob@127.0.0.1:6000/mydb".parse().unwrap();
        assert_eq!(pgpass_match(text, &c).as_deref(), Some("s:cr\\et"));
        let c: Config = "postgresql://eve@127.0.0.1:6000/x".parse().unwrap();
        assert_eq!(pgpass_match(text, &c).as_deref(), Some("fallback"));
        assert_eq!(pgpass_match("h:1:d:u:p", &c), None);
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("postgresql://u:secret@h:5/db"), "postgresql://u:***@h:5/db");
        assert_eq!(redact("postgresql://u@h/db"), "postgresql://u@h/db");
    }

    #[test]
    fn tls_parameters_are_understood_and_removed() {
        let t = parse("postgresql://u@h:5/db?sslmode=verify-full&application_name=x").unwrap();
        assert_eq!(t.tls, TlsMode::VerifyFull);
        assert_eq!(t.config.get_application_name(), Some("x"));
        assert_eq!(parse("postgresql://u@h/db?sslmode=disable").unwrap().tls, TlsMode::Disable);
        assert!(matches!(parse("postgresql://u@h/db?sslmode=bogus"), Err(Error::BadLocation { .. })));
        let missing = parse("postgresql://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.crt");
        assert!(matches!(missing, Err(Error::BadLocation { reason, .. }) if reason.contains("/nonexistent/ca.crt")));
    }

    #[test]
    fn waits_are_bounded_by_default_and_by_the_url() {
        let t = parse("postgresql://u@h/db").unwrap();
        assert_eq!((t.connect_timeout, t.io_timeout), (CONNECT_TIMEOUT, IO_TIMEOUT));
        assert_eq!(t.config.get_keepalives_idle(), Duration::from_secs(15));
        let t = parse("postgresql://u@h/db?connect_timeout=2&io_timeout=0.5&keepalives_idle=7").unwrap();
        assert_eq!((t.connect_timeout, t.io_timeout), (Duration::from_secs(2), Duration::from_millis(500)));
        assert_eq!(t.config.get_keepalives_idle(), Duration::from_secs(7));
        // libpq's "0 = forever" becomes the default bound.
        assert_eq!(parse("postgresql://u@h/db?connect_timeout=0").unwrap().connect_timeout, CONNECT_TIMEOUT);
        assert!(matches!(parse("postgresql://u@h/db?io_timeout=soon"), Err(Error::BadLocation { .. })));
    }
}
