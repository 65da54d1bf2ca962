//! Secrets out of logged statement text: the value after an option whose name says it is a
//! secret (`'aws.secret_access_key' '...'`, `password = '...'`, `SECRET '...'`) becomes
//! `'***'`.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// Follows a statement's tokens and says which one is a credential's value: a string
/// after an option whose name says it is a credential (`'aws.secret_access_key' '...'`,
/// `PASSWORD '...'`, `SECRET '...'`), or a bare or double-quoted word there, which the
/// statement may hold by mistake (`SECRET wJalr...`). `CREATE SECRET name` and `DROP
/// SECRET name` keep the name.
#[derive(Default)]
pub struct CredentialValues {
    after_name: bool,
    previous_word: Option<String>,
}

impl CredentialValues {
    /// Whether `token`, the statement's next, is a credential's value.
    pub fn hides(&mut self, token: &Token) -> bool {
        if matches!(token, Token::Whitespace(_)) {
            return false;
        }
        if self.after_name && matches!(token, Token::Eq) {
            return false;
        }
        let is_value = match token {
            Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::NationalStringLiteral(_) => true,
            Token::Word(w) => w.quote_style.is_some() || w.keyword == Keyword::NoKeyword,
            _ => false,
        };
        if std::mem::take(&mut self.after_name) && is_value {
            self.previous_word = None;
            return true;
        }
        let name = match token {
            Token::SingleQuotedString(s) => Some(s.as_str()),
            Token::Word(w) => Some(w.value.as_str()),
            _ => None,
        };
        let names_object = matches!(
            self.previous_word.as_deref(),
            Some("CREATE" | "DROP" | "REPLACE" | "PERSISTENT")
        );
        self.after_name =
            name.is_some_and(crate::access::secrets::is_credential_option) && !names_object;
        self.previous_word = match token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        };
        false
    }
}

/// `sql` with the values of secret options replaced by `'***'`. Text that does not
/// tokenize is replaced whole, since it cannot be told apart.
pub fn redact_secrets(sql: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return "<statement that does not tokenize; not logged>".to_string();
    };
    let mut out = String::with_capacity(sql.len());
    let mut credentials = CredentialValues::default();
    for token in tokens {
        if credentials.hides(&token) {
            out.push_str("'***'");
        } else {
            out.push_str(&token.to_string());
        }
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
        // A secret's credentials, quoted or not, and an SSE-C key; not the secret's name.
        let secret = redact_secrets(
            "CREATE OR REPLACE SECRET lake (TYPE s3, KEY_ID AKIA2, SECRET \"wJalr/q\", \
             SESSION_TOKEN = 'tok', REGION 'eu-west-1')",
        );
        for hidden in ["AKIA2", "wJalr", "tok'"] {
            assert!(!secret.contains(hidden), "{secret}");
        }
        assert!(
            secret.contains("SECRET lake") && secret.contains("'eu-west-1'"),
            "{secret}"
        );
        let sse = redact_secrets("OPTIONS ('aws.sse_customer_key_base64' 'c2VjcmV0')");
        assert!(!sse.contains("c2VjcmV0"), "{sse}");
        assert_eq!(
            redact_secrets("SELECT secret FROM t WHERE token = 1"),
            "SELECT secret FROM t WHERE token = 1"
        );
    }
}
