//! `FETCH` and `MOVE`, in PostgreSQL's whole grammar (sqlparser has no MOVE, and its FETCH
//! reads neither signed counts nor a bare `FORWARD`/`BACKWARD` nor a missing `FROM`):
//!
//! ```sql
//! { FETCH | MOVE } [ direction ] [ FROM | IN ] cursor
//! direction: NEXT | PRIOR | FIRST | LAST | ABSOLUTE n | RELATIVE n | n | ALL
//!          | FORWARD [ n | ALL ] | BACKWARD [ n | ALL ]
//! ```

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

/// `FETCH` (rows returned) or `MOVE` (only the position changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorStep {
    pub fetch: bool,
    pub direction: Direction,
    /// As PostgreSQL stores it: folded to lower case unless quoted.
    pub cursor: String,
}

/// Where a FETCH goes, normalised: NEXT is `Forward(Some(1))`, LAST is `Absolute(-1)`, a
/// negative count turns the direction round, and `FORWARD 0` / `BACKWARD 0` (the current
/// row again) are `Relative(0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The next n rows; `None` for all that are left.
    Forward(Option<u64>),
    /// The n rows before the current one, nearest first; `None` for all of them.
    Backward(Option<u64>),
    /// The n-th row (from the end when negative; before the first when 0).
    Absolute(i64),
    /// The row n after the current one (before it when negative; itself when 0).
    Relative(i64),
}

/// Parses the tokens of one FETCH or MOVE statement (whitespace included or not).
pub fn parse(tokens: &[&TokenWithSpan]) -> Result<CursorStep, String> {
    let mut words = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .peekable();
    let fetch = match words.next() {
        Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("FETCH") => true,
        Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("MOVE") => false,
        _ => return Err("expected FETCH or MOVE".into()),
    };
    let rest: Vec<&Token> = words.collect();
    let keyword = |i: usize, k: &str| {
        matches!(rest.get(i), Some(Token::Word(w)) if w.quote_style.is_none()
            && w.value.eq_ignore_ascii_case(k))
    };
    // A count: an optionally signed integer at `i`, and the tokens it took.
    let count = |i: usize| -> Option<(i64, usize)> {
        let (sign, at) = match rest.get(i) {
            Some(Token::Minus) => (-1, i + 1),
            Some(Token::Plus) => (1, i + 1),
            _ => (1, i),
        };
        match rest.get(at) {
            Some(Token::Number(n, _)) => n.parse::<i64>().ok().map(|n| (sign * n, at + 1 - i)),
            _ => None,
        }
    };
    let counted = |n: i64, forward: bool| -> Direction {
        let n_abs = n.unsigned_abs();
        match (n == 0, forward == (n > 0)) {
            (true, _) => Direction::Relative(0),
            (false, true) => Direction::Forward(Some(n_abs)),
            (false, false) => Direction::Backward(Some(n_abs)),
        }
    };
    let (direction, used) = if keyword(0, "NEXT") {
        (Direction::Forward(Some(1)), 1)
    } else if keyword(0, "PRIOR") {
        (Direction::Backward(Some(1)), 1)
    } else if keyword(0, "FIRST") {
        (Direction::Absolute(1), 1)
    } else if keyword(0, "LAST") {
        (Direction::Absolute(-1), 1)
    } else if keyword(0, "ABSOLUTE") || keyword(0, "RELATIVE") {
        let (n, taken) = count(1).ok_or("ABSOLUTE and RELATIVE need a row count")?;
        let direction = if keyword(0, "ABSOLUTE") {
            Direction::Absolute(n)
        } else {
            Direction::Relative(n)
        };
        (direction, 1 + taken)
    } else if keyword(0, "ALL") {
        (Direction::Forward(None), 1)
    } else if keyword(0, "FORWARD") || keyword(0, "BACKWARD") {
        let forward = keyword(0, "FORWARD");
        if keyword(1, "ALL") {
            let all = if forward {
                Direction::Forward(None)
            } else {
                Direction::Backward(None)
            };
            (all, 2)
        } else if let Some((n, taken)) = count(1) {
            (counted(n, forward), 1 + taken)
        } else {
            (counted(1, forward), 1)
        }
    } else if let Some((n, taken)) = count(0) {
        (counted(n, true), taken)
    } else {
        (Direction::Forward(Some(1)), 0)
    };
    let mut at = used;
    if keyword(at, "FROM") || keyword(at, "IN") {
        at += 1;
    }
    let cursor = match (rest.get(at), rest.len() == at + 1) {
        (Some(Token::Word(w)), true) => match w.quote_style {
            Some(_) => w.value.clone(),
            None => w.value.to_lowercase(),
        },
        _ => {
            return Err(format!(
                "syntax error in {}: expected [direction] [FROM | IN] cursor",
                if fetch { "FETCH" } else { "MOVE" }
            ));
        }
    };
    Ok(CursorStep {
        fetch,
        direction,
        cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn step(sql: &str) -> Result<CursorStep, String> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .unwrap();
        parse(&tokens.iter().collect::<Vec<_>>())
    }

    #[test]
    fn every_direction_of_postgresql() {
        use Direction::*;
        let cases = [
            ("FETCH c", Forward(Some(1))),
            ("FETCH NEXT FROM c", Forward(Some(1))),
            ("FETCH PRIOR IN c", Backward(Some(1))),
            ("FETCH FIRST c", Absolute(1)),
            ("fetch last from c", Absolute(-1)),
            ("FETCH ABSOLUTE -2 FROM c", Absolute(-2)),
            ("FETCH RELATIVE +3 FROM c", Relative(3)),
            ("FETCH 5 FROM c", Forward(Some(5))),
            ("FETCH -5 FROM c", Backward(Some(5))),
            ("FETCH ALL FROM c", Forward(None)),
            ("FETCH FORWARD FROM c", Forward(Some(1))),
            ("FETCH FORWARD 0 FROM c", Relative(0)),
            ("FETCH FORWARD -2 FROM c", Backward(Some(2))),
            ("FETCH BACKWARD FROM c", Backward(Some(1))),
            ("FETCH BACKWARD 4 FROM c", Backward(Some(4))),
            ("FETCH BACKWARD -4 FROM c", Forward(Some(4))),
            ("FETCH BACKWARD ALL FROM c", Backward(None)),
            ("MOVE FORWARD ALL IN c", Forward(None)),
        ];
        for (sql, direction) in cases {
            let parsed = step(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(parsed.direction, direction, "{sql}");
            assert_eq!(parsed.cursor, "c", "{sql}");
            assert_eq!(
                parsed.fetch,
                sql.to_uppercase().starts_with("FETCH"),
                "{sql}"
            );
        }
        assert_eq!(step("FETCH 2 FROM \"Big\"").unwrap().cursor, "Big");
        assert_eq!(step("FETCH 2 FROM Big").unwrap().cursor, "big");
        for bad in [
            "FETCH",
            "FETCH 2 FROM",
            "FETCH ABSOLUTE FROM c",
            "FETCH 2 FROM a b",
        ] {
            assert!(step(bad).is_err(), "{bad}");
        }
    }
}
