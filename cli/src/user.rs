//! `eddy user add NAME [--mechanism M]... [--iterations N] | list | delete NAME | passwd NAME`:
//! the broker's users (docs/security.md, "Authentication").
//!
//! A new password comes from `EDDY_NEW_PASSWORD`, or the first line of `--new-password-file
//! FILE`, or the first line of stdin (asked for on the terminal without echo, through `stty`),
//! never from an argument.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use eddy_client::Admin;
use eddy_client::sasl::Mechanism;
use eddy_protocol::v1;

use super::topic::{no_more, one_name};
use super::{Output, auth, connect};

/// Environment variable holding the new password of `user add` and `user passwd`.
pub const NEW_PASSWORD_ENV: &str = "EDDY_NEW_PASSWORD";

pub async fn run(broker: &str, parser: &mut lexopt::Parser, out: &mut Output) -> Result<()> {
    use lexopt::prelude::*;
    let Some(Value(action)) = parser.next()? else {
        bail!("user needs an action: add, list, delete or passwd")
    };
    match action.string()?.as_str() {
        "add" => {
            let (name, mechanisms, iterations, file) = add_args(parser)?;
            let password = new_password(&name, file)?;
            let admin = Admin::new(connect(broker).await?);
            let user = admin.create_user(&name, &password, &mechanisms, iterations).await?;
            out.line(format!("created user {}", describe(&user)).as_bytes())
        }
        "passwd" => {
            let (name, file) = name_and_file(parser)?;
            let password = new_password(&name, file)?;
            let user = Admin::new(connect(broker).await?).alter_user(&name, &password).await?;
            out.line(format!("changed the password of user {}", describe(&user)).as_bytes())
        }
        "delete" => {
            let name = one_name(parser)?;
            Admin::new(connect(broker).await?).delete_user(&name).await?;
            out.line(format!("deleted user {name}").as_bytes())
        }
        "list" => {
            no_more(parser)?;
            for user in Admin::new(connect(broker).await?).list_users().await? {
                out.line(describe(&user).as_bytes())?;
            }
            Ok(())
        }
        other => bail!("unknown user action {other:?} (add, list, delete, passwd)"),
    }
}

/// `alice (SCRAM-SHA-256, SCRAM-SHA-512)`.
fn describe(user: &v1::UserInfo) -> String {
    let mechanisms: Vec<&str> = user.credentials.iter().map(|c| c.mechanism.as_str()).collect();
    format!("{} ({})", user.name, mechanisms.join(", "))
}

type AddArgs = (String, Vec<Mechanism>, u32, Option<PathBuf>);

fn add_args(parser: &mut lexopt::Parser) -> Result<AddArgs> {
    use lexopt::prelude::*;
    let (mut name, mut mechanisms, mut iterations, mut file) = (None, Vec::new(), 0, None);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("mechanism") => {
                let m: Mechanism = parser.value()?.string()?.parse().map_err(anyhow::Error::msg)?;
                if m.scram().is_none() {
                    bail!(
                        "--mechanism {m}: a user has SCRAM credentials (PLAIN is checked against them)"
                    );
                }
                mechanisms.push(m);
            }
            Long("iterations") => iterations = parser.value()?.parse()?,
            Long("new-password-file") => file = Some(PathBuf::from(parser.value()?)),
            Long("password") | Long("new-password") => bail!(
                "a password is not an argument (ps shows arguments): use {NEW_PASSWORD_ENV}, \
                 --new-password-file FILE or stdin"
            ),
            Value(v) if name.is_none() => name = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    Ok((name.context("user add needs a NAME")?, mechanisms, iterations, file))
}

fn name_and_file(parser: &mut lexopt::Parser) -> Result<(String, Option<PathBuf>)> {
    use lexopt::prelude::*;
    let (mut name, mut file) = (None, None);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("new-password-file") => file = Some(PathBuf::from(parser.value()?)),
            Value(v) if name.is_none() => name = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    Ok((name.context("user passwd needs a NAME")?, file))
}

/// The new password: `EDDY_NEW_PASSWORD`, the file, or a line of stdin.
fn new_password(name: &str, file: Option<PathBuf>) -> Result<String> {
    if let Some(file) = file {
        return auth::read_password_file(&file);
    }
    if let Ok(password) = std::env::var(NEW_PASSWORD_ENV) {
        return Ok(password);
    }
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        let mut err = std::io::stderr();
        let _ = write!(err, "new password for {name}: ");
        let _ = err.flush();
        stty("-echo");
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        stty("echo");
        let _ = writeln!(std::io::stderr());
    }
    read.context("reading the new password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        bail!("no new password: set {NEW_PASSWORD_ENV}, give --new-password-file FILE, or type it");
    }
    Ok(password.to_string())
}

/// Switches the terminal's echo (`stty echo` / `stty -echo` on stdin's terminal).
fn stty(setting: &str) {
    let _ = std::process::Command::new("stty")
        .arg(setting)
        .stdin(std::process::Stdio::inherit())
        .status();
}
