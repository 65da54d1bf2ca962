//! Secrets out of logged statement text: the value after an option whose name says it is a
//! secret (`'aws.secret_access_key' '...'`, `password = '...'`) becomes `'***'`.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// `sql` with the values of secret options replaced by `'***'`. Text that does not
/// tokenize is replaced whole, since it cannot be told apart.
pub fn redact_secrets(sql: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return "<statement that does not tokenize; not logged>".to_string();
    };
    let mut out = String::with_capacity(sql.len());
    let mut hide_next = false;
    for token in tokens {
        let is_value = matches!(
            token,
            Token::SingleQuotedString(_)
                | Token::DollarQuotedString(_)
                | Token::EscapedStringLiteral(_)
                | Token::NationalStringLiteral(_)
        );
        if hide_next && is_value {
            out.push_str("'***'");
            hide_next = false;
            continue;
        }
        let name = match &token {
            Token::SingleQuotedString(s) => Some(s.as_str()),
            Token::Word(w) => Some(w.value.as_str()),
            _ => None,
        };
        if let Some(name) = name {
            hide_next = crate::access::secrets::is_credential_option(name);
        } else if !matches!(token, Token::Whitespace(_) | Token::Eq) {
            hide_next = false;
        }
        out.push_str(&token.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_option_values_are_hidden() {
        let sql = "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://b/k' OPTIONS \
                   ('aws.access_key_id' 'AKIA1', 'aws.secret_access_key' 'wJalr/xyz', \
                   'aws.region' 'eu-west-1')";
        let redacted = redact_secrets(sql);
        assert!(!redacted.contains("wJalr"), "{redacted}");
        assert!(!redacted.contains("AKIA1"), "{redacted}");
        assert!(redacted.contains("'eu-west-1'"), "{redacted}");
        assert!(redacted.contains("'s3://b/k'"), "{redacted}");
        let set = redact_secrets("ALTER USER x WITH PASSWORD 'hunter2'");
        assert!(!set.contains("hunter2"), "{set}");
        assert_eq!(redact_secrets("SELECT 'a', 1"), "SELECT 'a', 1");
    }
}
