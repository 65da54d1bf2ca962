//! Limits that keep any statement's parsing and planning bounded in time and stack, so
//! that no input can stall or crash the server; past them a statement fails with
//! statement_too_complex (54001), as PostgreSQL's "stack depth limit exceeded" does.
//!
//! - **Nested calls and arrays.** sqlparser's PostgreSQL dialect reads each function
//!   argument twice (first as a possible `name => value`, then as a value), so an argument
//!   nested `d` calls deep is parsed 2^d times: `abs(abs(...))` 22 deep takes seconds, 45
//!   deep forever; nested `ARRAY[...]` backtracks alike. The token stream tells the cost
//!   before parsing: [`check_tokens`] sums 2^depth over the tokens and refuses a statement
//!   past [`MAX_PARSE_WORK`].
//! - **Expression depth.** Every pass over the syntax tree (cloning, rewriting, planning)
//!   recurses once per level, and `x = 0 OR x = 1 OR ...` is a tree as deep as it has
//!   terms. Statements run on threads with a large stack, and [`check_depth`] refuses a
//!   tree deeper than [`MAX_EXPRESSION_DEPTH`] before anything else walks it.
//!
//! Parentheses are bounded by sqlparser's own recursion limit, which reports
//! `RecursionLimitExceeded` (also mapped to 54001).

use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Expr, Visit, Visitor};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{Error, Result};
use crate::pg::sqlstate::SqlState;

/// Most token parses a statement may cost: each token counts 2^(its function-call depth).
/// About 20 nested calls: seconds of parsing in a debug build, a tenth of that in a release
/// build.
pub const MAX_PARSE_WORK: u64 = 1 << 22;

/// Deepest expression tree a statement may have.
pub const MAX_EXPRESSION_DEPTH: usize = 2_500;

/// Fails when parsing `tokens` (one statement) would cost more than [`MAX_PARSE_WORK`].
pub fn check_tokens(tokens: &[&TokenWithSpan]) -> Result<()> {
    // Each open bracket, and whether it counts: a parenthesis after a word (a call, or a
    // keyword such as SELECT that opens one), a square bracket after a word (ARRAY[) or
    // after another (sqlparser tries nested brackets as subscripts too, and backtracks).
    let mut open: Vec<bool> = Vec::new();
    let mut calls = 0u32;
    let mut deepest = 0u32;
    let mut work = 0u64;
    let mut previous: Option<&Token> = None;
    for token in tokens {
        let counts = |after: Option<&Token>, bracket: bool| match after {
            Some(Token::Word(_)) => true,
            Some(Token::LBracket) => bracket,
            _ => false,
        };
        match &token.token {
            Token::Whitespace(_) => continue,
            open_token @ (Token::LParen | Token::LBracket) => {
                let counted = counts(previous, matches!(open_token, Token::LBracket));
                open.push(counted);
                if counted {
                    calls += 1;
                    deepest = deepest.max(calls);
                }
            }
            // The guard pops whether or not the bracket counted.
            Token::RParen | Token::RBracket if open.pop() == Some(true) => calls -= 1,
            _ => {}
        }
        previous = Some(&token.token);
        work = work.saturating_add(1u64.checked_shl(calls).unwrap_or(u64::MAX));
    }
    if work > MAX_PARSE_WORK {
        return Err(too_complex(format!(
            "function calls nest {deepest} deep; parsing would take too long \
             (nest them less, or compute inner parts in a subquery or CTE)"
        )));
    }
    Ok(())
}

/// Fails when an expression in `statement` nests deeper than [`MAX_EXPRESSION_DEPTH`].
pub fn check_depth(statement: &DFStatement) -> Result<()> {
    let mut depth = Depth::default();
    let flow = match statement {
        DFStatement::Statement(inner) => inner.visit(&mut depth),
        DFStatement::CopyTo(copy) => match &copy.source {
            CopyToSource::Query(query) => query.visit(&mut depth),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        DFStatement::Explain(explain) => return check_depth(&explain.statement),
        DFStatement::CreateExternalTable(_) | DFStatement::Reset(_) => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(too_complex(format!(
            "an expression nests more than {MAX_EXPRESSION_DEPTH} levels deep (long chains of \
             OR, AND or +, or deeply nested calls); use IN (...) or split the expression"
        ))),
    }
}

/// The error for a statement past a limit.
pub fn too_complex(detail: String) -> Error {
    Error::state(
        SqlState::StatementTooComplex,
        format!("statement too complex: {detail}"),
    )
}

#[derive(Default)]
struct Depth {
    current: usize,
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.current += 1;
        if self.current > MAX_EXPRESSION_DEPTH {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.current -= 1;
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use crate::sql::parse;

    fn state(sql: &str) -> Option<String> {
        parse(sql).err().map(|e| e.sqlstate().code().to_string())
    }

    #[test]
    fn nested_calls_are_refused_before_parsing() {
        let nested = |d: usize| format!("SELECT {}1{}", "abs(".repeat(d), ")".repeat(d));
        assert_eq!(state(&nested(12)), None);
        assert_eq!(state(&nested(18)), None);
        assert_eq!(state(&nested(45)).as_deref(), Some("54001"));
        assert_eq!(state(&nested(400)).as_deref(), Some("54001"));
        let arrays = |d: usize| format!("SELECT {}1{}", "ARRAY[".repeat(d), "]".repeat(d));
        assert_eq!(state(&arrays(60)).as_deref(), Some("54001"));
        // Wide is fine: work grows with depth, not with the number of calls.
        let wide = format!("SELECT {}", vec!["abs(abs(abs(x)))"; 2000].join(", "));
        assert_eq!(state(&wide), None);
    }

    #[test]
    fn deep_expressions_are_refused() {
        // Statements run on threads with a large stack (main.rs, cli); so does this test.
        std::thread::Builder::new()
            .stack_size(crate::STATEMENT_STACK_SIZE)
            .spawn(deep_expressions)
            .unwrap()
            .join()
            .unwrap();
    }

    fn deep_expressions() {
        let chain = |n: usize| {
            let terms: Vec<String> = (0..n).map(|i| format!("x = {i}")).collect();
            format!("SELECT 1 FROM t WHERE {}", terms.join(" OR "))
        };
        assert_eq!(state(&chain(2_000)), None);
        assert_eq!(state(&chain(5_000)).as_deref(), Some("54001"));
        let sum: Vec<String> = (1..=10_000).map(|i| format!("${i}::int")).collect();
        assert_eq!(
            state(&format!("SELECT {}", sum.join(" + "))).as_deref(),
            Some("54001")
        );
        let parens = format!("SELECT {}1{}", "(".repeat(300), ")".repeat(300));
        assert_eq!(state(&parens).as_deref(), Some("54001"));
    }
}
