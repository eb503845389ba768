//! `connection.url`: the JDBC form Confluent's connectors take
//! (`jdbc:postgresql://host:port/db?user=u&password=p`) and PostgreSQL's own URI
//! (`postgresql://u:p@host:port/db`, `postgres://...`), read into a [`PgAddr`]. A host that
//! starts with `/` is a Unix socket directory.

use std::time::Duration;

use crate::error::ConnectError;

/// Where a PostgreSQL database is and who connects to it.
#[derive(Clone, PartialEq, Eq)]
pub struct PgAddr {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for PgAddr {
    // The password stays out of logs and statuses.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "postgresql://{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }
}

fn decode(url: &str, text: &str) -> Result<String, ConnectError> {
    let bad =
        || ConnectError::Url { url: url.to_string(), reason: format!("bad %-escape in '{text}'") };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

impl PgAddr {
    pub fn parse(url: &str) -> Result<PgAddr, ConnectError> {
        let err =
            |reason: &str| ConnectError::Url { url: url.to_string(), reason: reason.to_string() };
        let rest = url
            .strip_prefix("jdbc:postgresql://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or_else(|| err("expected jdbc:postgresql://, postgresql:// or postgres://"))?;
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (auth, hostpart) = match main.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, main),
        };
        let (hostport, dbname) = hostpart.split_once('/').unwrap_or((hostpart, ""));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| err("the port is not a number"))?),
            None => (hostport, 5432),
        };
        let mut addr = PgAddr {
            host: decode(url, if host.is_empty() { "localhost" } else { host })?,
            port,
            dbname: decode(url, dbname)?,
            user: String::new(),
            password: None,
        };
        if let Some(auth) = auth {
            let (u, p) = auth.split_once(':').map_or((auth, None), |(u, p)| (u, Some(p)));
            addr.user = decode(url, u)?;
            addr.password = p.map(|p| decode(url, p)).transpose()?;
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "user" => addr.user = decode(url, v)?,
                "password" => addr.password = Some(decode(url, v)?),
                "host" => addr.host = decode(url, v)?,
                // JDBC and libpq settings with no meaning here (ssl, timeouts, names).
                _ => {}
            }
        }
        if addr.dbname.is_empty() {
            return Err(err("no database name after the host"));
        }
        Ok(addr)
    }

    /// The client configuration: UTC and ISO dates, so values read the same everywhere.
    pub fn client_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .dbname(&self.dbname)
            .user(&self.user)
            .application_name("eddy-connect")
            .options("-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3")
            .connect_timeout(Duration::from_secs(10));
        if let Some(p) = &self.password {
            c.password(p);
        }
        c
    }

    /// `host:port/db` as statuses show it.
    pub fn display(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }
}

/// Connects a query connection; its driver task runs on the current runtime until the client
/// is dropped.
pub async fn connect(addr: &PgAddr) -> Result<tokio_postgres::Client, ConnectError> {
    let (client, connection) = addr
        .client_config()
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| ConnectError::pg(format!("connecting to {}", addr.display()), &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// `"name"`: an identifier quoted for SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`: a literal quoted for SQL (standard_conforming_strings, PostgreSQL's default).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_and_uri_forms_read_the_same() {
        let a = PgAddr::parse(
            "jdbc:postgresql://127.0.0.1:5433/rides?user=eddy&password=p%40ss&ssl=false",
        )
        .unwrap();
        let b = PgAddr::parse("postgresql://eddy:p%40ss@127.0.0.1:5433/rides").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            (a.port, a.password.as_deref(), a.dbname.as_str()),
            (5433, Some("p@ss"), "rides")
        );
        assert_eq!(PgAddr::parse("postgres://u@h/db").unwrap().port, 5432);
        for bad in [
            "mysql://h/db",
            "jdbc:postgresql://h:x/db",
            "postgresql://h:5432",
            "postgresql://u@h/db%z",
        ] {
            assert!(PgAddr::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{a:?}").contains("p@ss"));
    }
}
