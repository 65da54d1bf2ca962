//! `recommend(model, user_id, k)` and the table function `recommendations(model, k)`, from a
//! recommender model: the k items a user does not have yet that the model ranks highest
//! (the most popular items for a user it was not trained on).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int64Array, Int64Builder, ListBuilder,
    RecordBatch, StringArray, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::ExecutionPlan;
use tenure_models::recommender::{Id, Ids, Recommender};
use tenure_models::{Kind, Model};

use crate::docs::DOC_SECTION;
use crate::features::sql_type_name;
use crate::model_arg::{ModelArg, resolve};
use crate::registry::{LoadedModel, ModelRegistry};
use crate::table_args::call_schema;

/// The most items one call returns.
const MAX_K: i64 = 1000;

/// The recommender inside `model`, whose kind its [`ModelArg`] checked.
fn recommender(model: &LoadedModel) -> &Recommender {
    match &model.model {
        Model::Recommender(r) => r,
        _ => unreachable!("the model argument admits only a recommender here"),
    }
}

fn id_type(ids: &Ids) -> DataType {
    match ids {
        Ids::Integer(_) => DataType::Int64,
        Ids::Text(_) => DataType::Utf8,
    }
}

#[derive(Debug)]
pub struct Recommend {
    registry: Arc<dyn ModelRegistry>,
    /// A recommender, or a sequence model of task next_item.
    model: ModelArg,
    signature: Signature,
    documentation: Documentation,
}

impl PartialEq for Recommend {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry)
    }
}

impl Eq for Recommend {}

impl Hash for Recommend {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "recommend".hash(state);
    }
}

pub fn recommend(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let documentation = Documentation::builder(
        DOC_SECTION,
        "The k items (a list, best first) a recommender model ranks highest for the user, \
         leaving out the items the user already had in the training data; the most popular \
         items for a user the model was not trained on. NULL for a NULL user or k; k from 0 \
         to 1000.",
        "recommend(model, user_id, k) | recommend(sequence_model, events [, ages], k)",
    )
    .with_argument(
        "model",
        "text literal: a recommender model, or name@version",
    )
    .with_argument(
        "user_id",
        "the user, of the type the model was trained on; for a sequence model of task \
         next_item, the event list (and ages) instead, and the k most likely next tokens come back",
    )
    .with_argument("k", "how many items")
    .with_sql_example("SELECT customer_id, recommend('recs', customer_id, 10) FROM customers")
    .build();
    ScalarUDF::new_from_impl(Recommend {
        registry,
        model: ModelArg::new("recommend", &[Kind::Recommender, Kind::Sequence])
            .wrong_kind("recommend needs a recommender model"),
        signature: Signature::variadic_any(Volatility::Stable),
        documentation,
    })
}

impl ScalarUDFImpl for Recommend {
    fn name(&self) -> &str {
        "recommend"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Int64,
            true,
        ))))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let Some(reference) = self.model.reference(args.scalar_arguments[0])? else {
            return plan_err!("recommend: argument 1 (model) must name a model, not NULL");
        };
        let model = resolve("recommend", self.registry.as_ref(), reference)?;
        if matches!(model.model, Model::Sequence(_)) {
            let types: Vec<DataType> = args.arg_fields[1..]
                .iter()
                .map(|f| f.data_type().clone())
                .collect();
            return crate::sequence::recommend_field(&model, &types);
        }
        if args.arg_fields.len() != 3 {
            return plan_err!(
                "recommend: a recommender model takes (model, user_id, k), got {} arguments",
                args.arg_fields.len()
            );
        }
        // The kind after the arity: another kind of model called with other than three
        // arguments hears about the recommender form's arguments first.
        self.model.check_kind(&model)?;
        let recs = recommender(&model);
        let user_type = args.arg_fields[1].data_type();
        let user_ok = match recs.spec.users {
            Ids::Integer(_) => user_type.is_integer() || user_type.is_null(),
            Ids::Text(_) => user_type.is_string() || user_type.is_null(),
        };
        if !user_ok {
            return plan_err!(
                "recommend: argument 2 (user_id) must be {} like the model's users, got {}",
                sql_type_name(&id_type(&recs.spec.users)),
                sql_type_name(user_type)
            );
        }
        let k_type = args.arg_fields[2].data_type();
        if !(k_type.is_integer() || k_type.is_null()) {
            return plan_err!(
                "recommend: argument 3 (k) must be an integer, got {}",
                sql_type_name(k_type)
            );
        }
        let item = Field::new("item", id_type(&recs.spec.items), true);
        Ok(Arc::new(Field::new(
            "recommend",
            DataType::List(Arc::new(item)),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let Some(model) = self
            .model
            .resolve_value(self.registry.as_ref(), &args.args[0])?
        else {
            return exec_err!("recommend: argument 1 (model) must name a model, not NULL");
        };
        if matches!(model.model, Model::Sequence(_)) {
            return crate::sequence::recommend_next(
                &model,
                self.registry.as_ref(),
                &args.args[1..],
                rows,
            );
        }
        let recs = recommender(&model);
        let users = args.args[1].to_array(rows)?;
        let users = cast(&users, &id_type(&recs.spec.users))?;
        let ks = cast(&args.args[2].to_array(rows)?, &DataType::Int64)?;
        let ks = ks.as_primitive::<Int64Type>();
        let mut results = Vec::with_capacity(rows);
        for row in 0..rows {
            if users.is_null(row) || ks.is_null(row) {
                results.push(None);
                continue;
            }
            let k = ks.value(row);
            if !(0..=MAX_K).contains(&k) {
                return exec_err!("recommend: k must be from 0 to {MAX_K}, got {k}");
            }
            let id = match &recs.spec.users {
                Ids::Integer(_) => Id::Integer(users.as_primitive::<Int64Type>().value(row)),
                Ids::Text(_) => Id::Text(users.as_string::<i32>().value(row)),
            };
            results.push(Some(recs.recommend(id, k as usize)));
        }
        let array: ArrayRef = match &recs.spec.items {
            Ids::Integer(items) => {
                let mut builder = ListBuilder::new(Int64Builder::new())
                    .with_field(Arc::new(Field::new("item", DataType::Int64, true)));
                for result in results {
                    match result {
                        Some(list) => {
                            for (i, _) in list {
                                builder.values().append_value(items[i as usize]);
                            }
                            builder.append(true);
                        }
                        None => builder.append(false),
                    }
                }
                Arc::new(builder.finish())
            }
            Ids::Text(items) => {
                let mut builder = ListBuilder::new(StringBuilder::new())
                    .with_field(Arc::new(Field::new("item", DataType::Utf8, true)));
                for result in results {
                    match result {
                        Some(list) => {
                            for (i, _) in list {
                                builder.values().append_value(&items[i as usize]);
                            }
                            builder.append(true);
                        }
                        None => builder.append(false),
                    }
                }
                Arc::new(builder.finish())
            }
        };
        Ok(ColumnarValue::Array(array))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.documentation)
    }
}

/// `recommendations(model, k)`: (user, rank, item, score) for every user the model knows.
#[derive(Debug)]
pub struct Recommendations {
    pub registry: Arc<dyn ModelRegistry>,
}

impl TableFunctionImpl for Recommendations {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const FUNCTION: &str = "recommendations";
        let exprs = args.exprs();
        if exprs.len() != 2 {
            return plan_err!(
                "{FUNCTION} expects 2 arguments (model, k), got {}",
                exprs.len()
            );
        }
        let reference = match &exprs[0] {
            Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => {
                s.clone()
            }
            _ => return plan_err!("{FUNCTION}: argument 1 (model) must be a text literal"),
        };
        let k = match &exprs[1] {
            Expr::Literal(v, _) if v.data_type().is_integer() => {
                match v.cast_to(&DataType::Int64)? {
                    ScalarValue::Int64(Some(k)) => k,
                    _ => return plan_err!("{FUNCTION}: argument 2 (k) must be an integer literal"),
                }
            }
            _ => return plan_err!("{FUNCTION}: argument 2 (k) must be an integer literal"),
        };
        if !(1..=MAX_K).contains(&k) {
            return plan_err!("{FUNCTION}: k must be from 1 to {MAX_K}, got {k}");
        }
        crate::access::check_model(args.session(), &reference)?;
        let model = ModelArg::new(FUNCTION, &[Kind::Recommender])
            .resolve_reference(self.registry.as_ref(), &reference)?;
        let recs = recommender(&model);
        let names: Vec<&str> = model
            .card
            .features
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        let schema = call_schema(
            Schema::new(vec![
                Field::new(names[0], id_type(&recs.spec.users), false),
                Field::new("rank", DataType::Int32, false),
                Field::new(names[1], id_type(&recs.spec.items), false),
                Field::new("score", DataType::Float64, false),
            ]),
            format!("{FUNCTION}({reference:?}, {k})"),
        );
        Ok(Arc::new(AllRecommendations {
            model,
            k: k as usize,
            schema,
        }))
    }
}

#[derive(Debug)]
struct AllRecommendations {
    model: Arc<LoadedModel>,
    k: usize,
    schema: SchemaRef,
}

impl AllRecommendations {
    fn batch(&self) -> Result<RecordBatch> {
        let recs = recommender(&self.model);
        let all = recs
            .recommend_all(self.k)
            .or_else(|e| exec_err!("recommendations: {e}"))?;
        let total: usize = all.iter().map(Vec::len).sum();
        let mut user_rows = Vec::with_capacity(total);
        let mut ranks = Vec::with_capacity(total);
        let mut item_rows = Vec::with_capacity(total);
        let mut scores = Vec::with_capacity(total);
        for (user, list) in all.iter().enumerate() {
            for (rank, (item, score)) in list.iter().enumerate() {
                user_rows.push(user);
                ranks.push(rank as i32 + 1);
                item_rows.push(*item as usize);
                scores.push(f64::from(*score));
            }
        }
        let ids = |ids: &Ids, rows: &[usize]| -> ArrayRef {
            match ids {
                Ids::Integer(v) => {
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|&r| v[r])))
                }
                Ids::Text(v) => {
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|&r| &v[r])))
                }
            }
        };
        Ok(RecordBatch::try_new(
            self.schema.clone(),
            vec![
                ids(&recs.spec.users, &user_rows),
                Arc::new(Int32Array::from(ranks)),
                ids(&recs.spec.items, &item_rows),
                Arc::new(Float64Array::from(scores)),
            ],
        )?)
    }
}

#[async_trait]
impl TableProvider for AllRecommendations {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.batch()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
