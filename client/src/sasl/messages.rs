//! SCRAM's four messages (RFC 5802, section 7): parsed strictly, borrowing from the text, with
//! every failure a [`SaslError::Malformed`] naming what is wrong. Nothing here allocates in
//! proportion to anything but the message itself, which callers bound first.
//!
//! ```text
//! client-first  = gs2-header [reserved-mext ","] "n=" saslname ",r=" c-nonce ["," extensions]
//! server-first  = "r=" c-nonce s-nonce ",s=" salt ",i=" iteration-count ["," extensions]
//! client-final  = "c=" base64(gs2-header) ",r=" nonce ["," extensions] ",p=" proof
//! server-final  = "v=" verifier | "e=" server-error-value
//! ```
//!
//! Channel binding is not offered (eddy's listeners have no TLS binding to tie it to): a client
//! asking for it (`p=`) is refused; `n` and `y` are accepted. Kafka's extensions
//! (`tokenauth=true` and the like) are returned for the caller to judge.

use super::{SaslError, b64, unb64};

/// The GS2 header of a client without channel binding or authorization identity.
pub const GS2_HEADER: &str = "n,,";

/// `name` as a SCRAM `saslname`: `=` as `=3D`, `,` as `=2C`.
pub fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// A `saslname` read back: `=` must start `=3D` or `=2C`.
pub fn unescape_name(text: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=3D") => out.push('='),
            Some("=2C") => out.push(','),
            _ => return Err(SaslError::Malformed("an '=' in a name that is not =3D or =2C")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A nonce is printable ASCII without a comma.
fn check_nonce(nonce: &str) -> Result<&str, SaslError> {
    let printable = nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',');
    if nonce.is_empty() || !printable {
        return Err(SaslError::Malformed("a nonce must be printable ASCII without commas"));
    }
    Ok(nonce)
}

/// Splits `key=value`; the key is letters and digits.
fn attribute(text: &str) -> Result<(&str, &str), SaslError> {
    let (key, value) =
        text.split_once('=').ok_or(SaslError::Malformed("an attribute without '='"))?;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(SaslError::Malformed("an attribute name that is not letters and digits"));
    }
    Ok((key, value))
}

/// The client's first message, as the server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst<'a> {
    /// `n,,`, `y,,` or with an authorization identity: echoed, in base64, in `client-final`.
    pub gs2_header: &'a str,
    /// The authorization identity, if one was given.
    pub authzid: Option<String>,
    pub user: String,
    pub nonce: &'a str,
    /// The message without its GS2 header (part of the signed `AuthMessage`).
    pub bare: &'a str,
    /// Attributes after the nonce (Kafka's `tokenauth=true`, for one).
    pub extensions: Vec<(&'a str, &'a str)>,
}

impl<'a> ClientFirst<'a> {
    pub fn parse(text: &'a str) -> Result<ClientFirst<'a>, SaslError> {
        let mut parts = text.splitn(3, ',');
        let (Some(flag), Some(authz), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SaslError::Malformed("client-first without a GS2 header"));
        };
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => {
                return Err(SaslError::Malformed("channel binding is not supported"));
            }
            _ => {
                return Err(SaslError::Malformed("a GS2 channel-binding flag other than n, y, p="));
            }
        }
        let authzid = match authz {
            "" => None,
            a => Some(unescape_name(
                a.strip_prefix("a=").ok_or(SaslError::Malformed("an authzid without 'a='"))?,
            )?),
        };
        let gs2_header = &text[..flag.len() + authz.len() + 2];
        let mut attributes = bare.split(',');
        let user = match attributes.next().map(attribute).transpose()? {
            Some(("n", name)) => unescape_name(name)?,
            Some(("m", _)) => return Err(SaslError::Malformed("a mandatory extension (m=)")),
            _ => return Err(SaslError::Malformed("client-first without a user name (n=)")),
        };
        let nonce = match attributes.next().map(attribute).transpose()? {
            Some(("r", nonce)) => check_nonce(nonce)?,
            _ => return Err(SaslError::Malformed("client-first without a nonce (r=)")),
        };
        let extensions = attributes.map(attribute).collect::<Result<Vec<_>, _>>()?;
        Ok(ClientFirst { gs2_header, authzid, user, nonce, bare, extensions })
    }
}

/// The server's first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst<'a> {
    pub nonce: &'a str,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl<'a> ServerFirst<'a> {
    /// `r=NONCE,s=SALT,i=ITERATIONS`.
    pub fn format(nonce: &str, salt: &[u8], iterations: u32) -> String {
        format!("r={nonce},s={},i={iterations}", b64(salt))
    }

    pub fn parse(text: &'a str) -> Result<ServerFirst<'a>, SaslError> {
        if let Some(error) = text.strip_prefix("e=") {
            return Err(SaslError::Server(error.to_string()));
        }
        let mut attributes = text.split(',').map(attribute);
        let (Some(Ok(("r", nonce))), Some(Ok(("s", salt))), Some(Ok(("i", iterations)))) =
            (attributes.next(), attributes.next(), attributes.next())
        else {
            return Err(SaslError::Malformed("server-first is not r=...,s=...,i=..."));
        };
        let salt = unb64(salt).ok_or(SaslError::Malformed("a salt that is not base64"))?;
        let iterations = iterations
            .parse()
            .map_err(|_| SaslError::Malformed("an iteration count that is not a number"))?;
        Ok(ServerFirst { nonce: check_nonce(nonce)?, salt, iterations })
    }
}

/// The client's final message, as the server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal<'a> {
    /// The GS2 header the client sent first, decoded from `c=`.
    pub channel_binding: Vec<u8>,
    pub nonce: &'a str,
    pub proof: Vec<u8>,
    /// The message up to (not including) `,p=`: part of the signed `AuthMessage`.
    pub without_proof: &'a str,
}

impl<'a> ClientFinal<'a> {
    pub fn parse(text: &'a str) -> Result<ClientFinal<'a>, SaslError> {
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(SaslError::Malformed("client-final without a proof (p=)"))?;
        let proof = unb64(proof).ok_or(SaslError::Malformed("a proof that is not base64"))?;
        let mut attributes = without_proof.split(',').map(attribute);
        let channel_binding = match attributes.next() {
            Some(Ok(("c", binding))) => unb64(binding)
                .ok_or(SaslError::Malformed("a channel binding that is not base64"))?,
            _ => return Err(SaslError::Malformed("client-final without a channel binding (c=)")),
        };
        let nonce = match attributes.next() {
            Some(Ok(("r", nonce))) => check_nonce(nonce)?,
            _ => return Err(SaslError::Malformed("client-final without a nonce (r=)")),
        };
        for extension in attributes {
            extension?;
        }
        Ok(ClientFinal { channel_binding, nonce, proof, without_proof })
    }
}
