//! SCRAM-SHA-256 verifiers in PostgreSQL's form,
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64): what pg_authid keeps
//! instead of a password. A verifier checks a login but cannot be used to log in, and one
//! made by a client (psql's `\password` sends it) is stored as given.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pgwire::api::auth::Password;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, gen_scram_keys};

use crate::error::{Error, Result};

const PREFIX: &str = "SCRAM-SHA-256$";

/// The verifier of `password`, with a fresh random salt.
pub fn verifier(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let (stored, server) = gen_scram_keys(password, &salt, SCRAM_ITERATIONS);
    format!(
        "{PREFIX}{SCRAM_ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored),
        STANDARD.encode(server)
    )
}

/// Whether `text` is a verifier (a pre-hashed password) rather than a password.
pub fn is_verifier(text: &str) -> bool {
    parse(text).is_ok()
}

/// The password for `CREATE ROLE ... PASSWORD 'text'`: a verifier as given, or the
/// verifier of a clear password.
pub fn stored_form(text: &str) -> Result<String> {
    if text.starts_with(PREFIX) {
        parse(text)?;
        return Ok(text.to_string());
    }
    if text.is_empty() {
        return Err(Error::invalid("a password must not be empty"));
    }
    Ok(verifier(text))
}

/// What pgwire's SCRAM exchange checks a login against.
pub fn login_secret(verifier: &str) -> Result<Password> {
    let (iterations, salt, stored, server) = parse(verifier)?;
    Ok(Password::scram_verifier(salt, iterations, &stored, &server))
}

type Parts = (usize, Vec<u8>, Vec<u8>, Vec<u8>);

fn parse(text: &str) -> Result<Parts> {
    let bad = || Error::invalid("the password is not a valid SCRAM-SHA-256 verifier");
    let rest = text.strip_prefix(PREFIX).ok_or_else(bad)?;
    let (head, keys) = rest.split_once('$').ok_or_else(bad)?;
    let (iterations, salt) = head.split_once(':').ok_or_else(bad)?;
    let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
    let iterations: usize = iterations.parse().map_err(|_| bad())?;
    // PostgreSQL accepts any count; a huge one would stall every login of the role.
    if !(1..=10_000_000).contains(&iterations) {
        return Err(bad());
    }
    let decode = |s: &str| STANDARD.decode(s).map_err(|_| bad());
    let (salt, stored, server) = (decode(salt)?, decode(stored)?, decode(server)?);
    if salt.is_empty() || stored.len() != 32 || server.len() != 32 {
        return Err(bad());
    }
    Ok((iterations, salt, stored, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_hide_the_password_and_round_trip() {
        let v = verifier("s3cret");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("s3cret"));
        assert_ne!(v, verifier("s3cret"), "each verifier has its own salt");
        assert!(is_verifier(&v));
        assert_eq!(stored_form(&v).unwrap(), v, "a verifier is stored as given");
        assert!(login_secret(&v).is_ok());
        for bad in [
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$99999999999:c2FsdA==$xRzzoC2Ad5eCcuIb5VcBSWeTEZmyYCT56njPLyhsKy4=:qNsIY4Zol26BgaPbGQH8Qz6O1V7yxdqImkXF0LS2PDU=",
        ] {
            assert!(stored_form(bad).is_err(), "{bad}");
        }
        assert!(stored_form("").is_err());
    }
}
