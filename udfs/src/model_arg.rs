//! The model argument of tenure's functions: a text literal naming a model (`churn`, or
//! `churn@2` for a version), read, resolved through the registry and checked against the
//! kinds the function takes, at planning and again at execution (a new version may have
//! replaced the model in between). Functions differ only in their kinds and in how their
//! errors word the argument.

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::ColumnarValue;
use tenure_models::Kind;

use crate::registry::{LoadedModel, ModelError, ModelRegistry};

/// One function's model argument.
#[derive(Debug, Clone)]
pub(crate) struct ModelArg {
    /// The function, which starts every error message.
    function: &'static str,
    /// The argument's position, from 1.
    position: usize,
    /// How an execution error names the argument after its position, such as "(model)".
    label: &'static str,
    /// The kinds the function takes; empty for any.
    kinds: Vec<Kind>,
    /// The planning error for an argument that is not a text literal, after "argument N ".
    not_literal: String,
    /// The error for a model of another kind, after "model 'name' is of kind k; ".
    wrong_kind: String,
}

impl ModelArg {
    /// Argument 1, `model`, naming a model of one of `kinds` (of any kind when empty).
    pub(crate) fn new(function: &'static str, kinds: &[Kind]) -> ModelArg {
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        ModelArg {
            function,
            position: 1,
            label: "(model)",
            kinds: kinds.to_vec(),
            not_literal: "(model) must be a text literal naming a model".to_string(),
            wrong_kind: format!("{function} needs a {} model", names.join(" or ")),
        }
    }

    /// Argument `position` (from 1) of a function that takes several models, here one of
    /// `kind`; errors name the argument by its position and kind.
    pub(crate) fn nth(function: &'static str, position: usize, kind: Kind) -> ModelArg {
        ModelArg {
            function,
            position,
            label: "(a model)",
            kinds: vec![kind],
            not_literal: format!("must be a text literal naming a {kind} model"),
            wrong_kind: format!("argument {position} must be a {kind} model"),
        }
    }

    /// The same argument, with `text` as the planning error for one that is not a text
    /// literal (after "argument N ").
    pub(crate) fn not_literal(mut self, text: impl Into<String>) -> ModelArg {
        self.not_literal = text.into();
        self
    }

    /// The same argument, with `text` as the error for a model of another kind (after "model
    /// 'name' is of kind k; ").
    pub(crate) fn wrong_kind(mut self, text: impl Into<String>) -> ModelArg {
        self.wrong_kind = text.into();
        self
    }

    /// At planning: the model the literal names (`literal` is None when the argument is not a
    /// literal at all); None for a NULL literal.
    pub(crate) fn resolve_literal(
        &self,
        registry: &dyn ModelRegistry,
        literal: Option<&ScalarValue>,
    ) -> Result<Option<Arc<LoadedModel>>> {
        match self.reference(literal)? {
            Some(reference) => self.resolve_reference(registry, reference).map(Some),
            None => Ok(None),
        }
    }

    /// At execution: the model the argument's value names; None for NULL. A column of model
    /// names is an error: the model was fixed at planning.
    pub(crate) fn resolve_value(
        &self,
        registry: &dyn ModelRegistry,
        value: &ColumnarValue,
    ) -> Result<Option<Arc<LoadedModel>>> {
        match value {
            ColumnarValue::Scalar(literal) => self.resolve_literal(registry, Some(literal)),
            ColumnarValue::Array(_) => exec_err!(
                "{}: argument {} {} must be a text literal",
                self.function,
                self.position,
                self.label
            ),
        }
    }

    /// The model `reference` names, already read from its literal, checked to be of a kind
    /// the function takes.
    pub(crate) fn resolve_reference(
        &self,
        registry: &dyn ModelRegistry,
        reference: &str,
    ) -> Result<Arc<LoadedModel>> {
        let model = resolve(self.function, registry, reference)?;
        self.check_kind(&model)?;
        Ok(model)
    }

    /// The model reference in a text literal (`literal` is None when the argument is not a
    /// literal at all); None for a NULL literal. The first step of
    /// [`ModelArg::resolve_literal`], for a function that checks more before the kind.
    pub(crate) fn reference<'a>(
        &self,
        literal: Option<&'a ScalarValue>,
    ) -> Result<Option<&'a str>> {
        match literal {
            Some(ScalarValue::Utf8(r) | ScalarValue::Utf8View(r) | ScalarValue::LargeUtf8(r)) => {
                Ok(r.as_deref())
            }
            Some(ScalarValue::Null) => Ok(None),
            _ => plan_err!(
                "{}: argument {} {}",
                self.function,
                self.position,
                self.not_literal
            ),
        }
    }

    /// An error unless `model` is of a kind the function takes. The last step of
    /// [`ModelArg::resolve_literal`], for a function that checks more before the kind.
    pub(crate) fn check_kind(&self, model: &LoadedModel) -> Result<()> {
        if !self.kinds.is_empty() && !self.kinds.contains(&model.card.kind) {
            return plan_err!(
                "{}: model '{}' is of kind {}; {}",
                self.function,
                model.card.name,
                model.card.kind,
                self.wrong_kind
            );
        }
        Ok(())
    }
}

/// Resolves `reference` through `registry`, prefixing errors with the function's name. A
/// wrong name is a planning error; a model whose files are gone or broken keeps its type
/// ([`ModelError`]), so that the engine can say which (a SQLSTATE of its own).
pub fn resolve(
    function: &str,
    registry: &dyn ModelRegistry,
    reference: &str,
) -> Result<Arc<LoadedModel>> {
    registry.model(reference).map_err(|e| match e {
        ModelError::InvalidReference(_) | ModelError::NotFound(_) => {
            DataFusionError::Plan(e.prefixed(function).to_string())
        }
        ModelError::Unreadable(_) | ModelError::Corrupt(_) => {
            DataFusionError::External(Box::new(e.prefixed(function)))
        }
    })
}
