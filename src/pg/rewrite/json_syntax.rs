//! JSON syntax DataFusion has no plan for, as the functions of [`crate::pg::json`]; and an
//! explicit cast to `varchar(n)`, which cuts to n as in PostgreSQL.

use datafusion::sql::sqlparser::ast::{
    DataType as SqlType, Expr as SqlExpr, Ident, ObjectName, Statement, VisitMut, VisitorMut,
};

use super::function_call;

use crate::pg::json::{AGG, AGG_B, ELEMENTS, ELEMENTS_TEXT, OBJECT_KEYS, PARSE_JSON, PARSE_JSONB};
use crate::pg::types::varchar_length;

/// The JSON syntax DataFusion has no plan for, as functions: casts to json and jsonb,
/// `json_agg` / `jsonb_agg` (over `array_agg`) and `json_array_elements[_text]` /
/// `jsonb_array_elements[_text]` (`unnest` of the elements).
pub fn rewrite_json_syntax(statement: &mut Statement) {
    struct Rewrite;
    impl VisitorMut for Rewrite {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut SqlExpr) -> std::ops::ControlFlow<()> {
            match expr {
                // An explicit cast to varchar(n) cuts, as in PostgreSQL; the type planner's
                // varchar(n) is for columns.
                SqlExpr::Cast {
                    data_type,
                    expr: inner,
                    ..
                } if varchar_length(data_type).is_some() => {
                    let length = varchar_length(data_type).unwrap_or_default();
                    let text = SqlExpr::Cast {
                        kind: datafusion::sql::sqlparser::ast::CastKind::Cast,
                        expr: inner.clone(),
                        data_type: SqlType::Varchar(None),
                        format: None,
                        array: false,
                    };
                    *expr = function_call(
                        "left",
                        vec![
                            text,
                            SqlExpr::Value(
                                datafusion::sql::sqlparser::ast::Value::Number(
                                    length.to_string(),
                                    false,
                                )
                                .into(),
                            ),
                        ],
                    );
                }
                SqlExpr::Cast {
                    data_type: data_type @ (SqlType::JSON | SqlType::JSONB),
                    expr: inner,
                    ..
                } => {
                    let name = if *data_type == SqlType::JSON {
                        PARSE_JSON
                    } else {
                        PARSE_JSONB
                    };
                    *expr = function_call(name, vec![(**inner).clone()]);
                }
                SqlExpr::Function(function) => {
                    let name = function.name.to_string().to_ascii_lowercase();
                    match name.as_str() {
                        "json_agg" | "jsonb_agg" => {
                            let wrapper = if name == "json_agg" { AGG } else { AGG_B };
                            let mut array_agg = function.clone();
                            array_agg.name = object_name("array_agg");
                            *expr = function_call(wrapper, vec![SqlExpr::Function(array_agg)]);
                        }
                        "json_array_elements"
                        | "jsonb_array_elements"
                        | "json_array_elements_text"
                        | "jsonb_array_elements_text"
                        | "json_object_keys"
                        | "jsonb_object_keys" => {
                            let inner = if name.ends_with("_keys") {
                                OBJECT_KEYS
                            } else if name.ends_with("_text") {
                                ELEMENTS_TEXT
                            } else {
                                ELEMENTS
                            };
                            let mut elements = function.clone();
                            elements.name = object_name(inner);
                            *expr = function_call("unnest", vec![SqlExpr::Function(elements)]);
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Rewrite);
}

fn object_name(name: &str) -> ObjectName {
    ObjectName::from(vec![Ident::new(name)])
}
