//! The global authentication options: `--user NAME`, the password from `EDDY_PASSWORD` or
//! `--password-file FILE` (never from an argument, which every user of the machine can read in
//! `ps`), `--sasl-mechanism M` (default SCRAM-SHA-512). They become the credentials of every
//! connection a command opens to the broker ([`options`]), with the TLS options of the global
//! `--tls-*` flags.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use eddy_client::sasl::Mechanism;
use eddy_client::{ConnectionOptions, Credentials, TlsOptions};

/// Environment variable holding the password of `--user`.
pub const PASSWORD_ENV: &str = "EDDY_PASSWORD";

/// What the global options said, before they are checked.
#[derive(Debug, Default)]
pub struct AuthArgs {
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub mechanism: Option<Mechanism>,
}

impl AuthArgs {
    /// Takes the long option `--name` (and its value) if it is one of the authentication
    /// options; `Ok(false)` if it is not.
    pub fn take(&mut self, name: &str, parser: &mut lexopt::Parser) -> Result<bool> {
        use lexopt::prelude::*;
        match name {
            "user" => self.user = Some(parser.value()?.string()?),
            "password-file" => self.password_file = Some(PathBuf::from(parser.value()?)),
            "sasl-mechanism" => {
                let name = parser.value()?.string()?;
                self.mechanism = Some(name.parse().map_err(anyhow::Error::msg)?);
            }
            "password" => bail!(
                "--password is not an option: a password in the arguments is visible to every \
                 user in ps; put it in {PASSWORD_ENV} or in a file named by --password-file"
            ),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The credentials these options name (`None` without `--user`), the password read from
    /// the file or the environment.
    pub fn credentials(self, env: impl Fn(&str) -> Option<String>) -> Result<Option<Credentials>> {
        let Some(user) = self.user else {
            if self.password_file.is_some() || self.mechanism.is_some() {
                bail!("--password-file and --sasl-mechanism need --user NAME");
            }
            return Ok(None);
        };
        let password = match (&self.password_file, env(PASSWORD_ENV)) {
            (Some(file), _) => read_password_file(file)?,
            (None, Some(password)) => password,
            (None, None) => bail!(
                "--user {user} needs a password: set {PASSWORD_ENV} or give --password-file FILE"
            ),
        };
        let mechanism = self.mechanism.unwrap_or(Mechanism::ScramSha512);
        Ok(Some(Credentials::new(user, password).with_mechanism(mechanism)))
    }
}

/// The first line of `file`, without its line ending (a password file is one line).
pub fn read_password_file(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the password file {}", file.display()))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        bail!("the password file {} is empty", file.display());
    }
    Ok(line.to_string())
}

static OPTIONS: OnceLock<ConnectionOptions> = OnceLock::new();

/// Sets the options every connection to the broker uses (once, before the command runs):
/// its credentials and TLS.
pub fn set_connection(credentials: Option<Credentials>, tls: Option<TlsOptions>) {
    let _ = OPTIONS.set(ConnectionOptions { credentials, tls, ..ConnectionOptions::default() });
}

/// The options of a connection to the broker: the default ones, with the credentials.
pub fn options() -> ConnectionOptions {
    OPTIONS.get().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<AuthArgs> {
        let mut parser = lexopt::Parser::from_iter(list.iter().copied());
        let mut auth = AuthArgs::default();
        while let Some(lexopt::Arg::Long(name)) = parser.next()? {
            let name = name.to_string();
            assert!(auth.take(&name, &mut parser)?, "{name:?} not taken");
        }
        Ok(auth)
    }

    #[test]
    fn the_password_comes_from_the_environment_or_a_file_never_an_argument() {
        let env = |k: &str| (k == PASSWORD_ENV).then(|| "from-env".to_string());
        let c = args(&["x", "--user", "alice"]).unwrap().credentials(env).unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "from-env"));
        assert_eq!(c.mechanism, Mechanism::ScramSha512);
        assert!(!format!("{c:?}").contains("from-env"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let file_arg = file.to_str().unwrap();
        let list = ["x", "--user", "bob", "--password-file", file_arg, "--sasl-mechanism", "plain"];
        let c = args(&list).unwrap().credentials(env).unwrap().unwrap();
        assert_eq!((c.password.as_str(), c.mechanism), ("from-file", Mechanism::Plain));
        let e = args(&["x", "--password", "secret"]).err().unwrap().to_string();
        assert!(e.contains("--password is not an option"), "{e}");
        let e = args(&["x", "--user", "carol"]).unwrap().credentials(|_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--user carol needs a password: set EDDY_PASSWORD or give --password-file FILE"
        );
        assert!(args(&["x"]).unwrap().credentials(env).unwrap().is_none());
    }
}
