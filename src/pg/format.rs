//! PostgreSQL's `format(formatstr, args...)`, which Metabase's schema sync and scripts use
//! to build identifiers and literals: `%s` (the value as text, NULL as nothing), `%I` (an
//! identifier, quoted where needed), `%L` (a literal, quoted; NULL as `NULL`), `%%`, and
//! positions (`%2$s`). Widths and the `-` flag are refused with a clear error.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err, not_impl_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(Format {
        signature: Signature::variadic_any(Volatility::Stable),
    }));
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        if args.args.is_empty() {
            return exec_err!("format needs a format string");
        }
        // Every argument as text, the way PostgreSQL's output functions write them.
        let texts: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| cast(&a.to_array(rows)?, &DataType::Utf8).map_err(Into::into))
            .collect::<Result<_>>()?;
        let mut out = StringBuilder::new();
        for row in 0..rows {
            let value = |i: usize| {
                let array = texts[i].as_string::<i32>();
                (!array.is_null(row)).then(|| array.value(row).to_string())
            };
            match value(0) {
                None => out.append_null(),
                Some(pattern) => out.append_value(format_row(&pattern, &value, texts.len() - 1)?),
            }
        }
        super::udf_args::like_arguments(&args.args, Arc::new(out.finish()))
    }
}

/// One row: `pattern` with its arguments (`value(1)` is the first) filled in.
fn format_row(
    pattern: &str,
    value: &dyn Fn(usize) -> Option<String>,
    count: usize,
) -> Result<String> {
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    let mut next = 1;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // An optional position `n$`.
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let position = if !digits.is_empty() {
            if chars.next() != Some('$') {
                return not_impl_err!("format: widths are not supported (in \"{pattern}\")");
            }
            match digits.parse::<usize>() {
                Ok(0) => {
                    return exec_err!(
                        "format specifies argument 0, but arguments are numbered from 1"
                    );
                }
                Ok(n) => Some(n),
                Err(_) => return exec_err!("format: argument number {digits} is out of range"),
            }
        } else {
            None
        };
        let kind = chars.next();
        if kind == Some('%') && digits.is_empty() {
            out.push('%');
            continue;
        }
        let index = position.unwrap_or(next);
        next = index + 1;
        if index > count {
            return exec_err!("format: too few arguments for \"{pattern}\"");
        }
        match kind {
            Some('s') => out.push_str(&value(index).unwrap_or_default()),
            Some('I') => match value(index) {
                Some(name) => out.push_str(&quote_ident(&name)),
                None => return exec_err!("format: a NULL cannot be an identifier (%I)"),
            },
            Some('L') => match value(index) {
                Some(text) => out.push_str(&format!("'{}'", text.replace('\'', "''"))),
                None => out.push_str("NULL"),
            },
            Some('-') => {
                return not_impl_err!("format: flags are not supported (in \"{pattern}\")");
            }
            other => {
                return exec_err!(
                    "format: unrecognized conversion type specifier \"{}\"",
                    other.map(String::from).unwrap_or_default()
                );
            }
        }
    }
    Ok(out)
}

/// An identifier as `quote_ident` writes it: bare when it is lower case letters, digits and
/// underscores not starting with a digit, else in double quotes.
fn quote_ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(pattern: &str, args: &[Option<&str>]) -> Result<String> {
        let value = |i: usize| args[i - 1].map(String::from);
        format_row(pattern, &value, args.len())
    }

    /// Checked against PostgreSQL 15's `format`.
    #[test]
    fn formats_as_postgresql_does() {
        assert_eq!(
            format("%s-%I-%L", &[Some("a"), Some("B c"), Some("x'y")]).unwrap(),
            "a-\"B c\"-'x''y'"
        );
        assert_eq!(
            format("%I.%I", &[Some("public"), Some("orders")]).unwrap(),
            "public.orders"
        );
        assert_eq!(
            format("%2$s %1$s %%", &[Some("a"), Some("b")]).unwrap(),
            "b a %"
        );
        assert_eq!(format("[%s] %L", &[None, None]).unwrap(), "[] NULL");
        assert!(format("%s %s", &[Some("a")]).is_err());
        assert!(format("%I", &[None]).is_err());
        assert!(format("%10s", &[Some("a")]).is_err());
        assert!(format("%0$s", &[Some("a")]).is_err());
        assert!(format("%99999999999999999999999$s", &[Some("a")]).is_err());
    }
}
