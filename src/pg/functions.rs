//! Functions that read or change one session's settings: `current_setting(name [, missing_ok])`,
//! `set_config(name, value, is_local)` and `session_user()` (what `current_user`,
//! `session_user` and `user` become after the pg_catalog rewrites: the user who logged in). Registered on each session's own context, so
//! they see that session's settings only.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use datafusion::prelude::SessionContext;

use super::settings::Settings;

/// Registers `current_setting()` and `set_config()` on `ctx`, over `settings`.
pub fn register_session_functions(ctx: &SessionContext, settings: &Arc<Mutex<Settings>>) {
    for which in [Which::CurrentSetting, Which::SetConfig, Which::SessionUser] {
        ctx.register_udf(ScalarUDF::new_from_impl(SettingFunction::new(
            which,
            settings.clone(),
        )));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Which {
    CurrentSetting,
    SetConfig,
    SessionUser,
}

#[derive(Debug)]
struct SettingFunction {
    which: Which,
    settings: Arc<Mutex<Settings>>,
    signature: Signature,
}

impl PartialEq for SettingFunction {
    fn eq(&self, other: &Self) -> bool {
        self.which == other.which && Arc::ptr_eq(&self.settings, &other.settings)
    }
}

impl Eq for SettingFunction {}

impl std::hash::Hash for SettingFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.which.hash(state);
        Arc::as_ptr(&self.settings).hash(state);
    }
}

impl SettingFunction {
    fn new(which: Which, settings: Arc<Mutex<Settings>>) -> SettingFunction {
        let signature = match which {
            Which::CurrentSetting => Signature::one_of(
                vec![
                    TypeSignature::String(1),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
            Which::SetConfig => Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
                Volatility::Volatile,
            ),
            Which::SessionUser => Signature::exact(vec![], Volatility::Stable),
        };
        SettingFunction {
            which,
            settings,
            signature,
        }
    }
}

fn strings(value: &ColumnarValue, rows: usize) -> Result<StringArray> {
    let array = value.to_array(rows)?;
    let array = cast(&array, &DataType::Utf8)?;
    Ok(array
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8 gives a StringArray")
        .clone())
}

impl ScalarUDFImpl for SettingFunction {
    fn name(&self) -> &str {
        match self.which {
            Which::CurrentSetting => "current_setting",
            Which::SetConfig => "set_config",
            Which::SessionUser => "session_user",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        if self.which == Which::SessionUser {
            let settings = self.settings.lock().expect("settings lock poisoned");
            let user = settings.get("session_authorization").unwrap_or_default();
            return Ok(ColumnarValue::Scalar(user.as_str().into()));
        }
        let names = strings(&args.args[0], rows)?;
        let mut out = StringBuilder::new();
        let mut settings = self.settings.lock().expect("settings lock poisoned");
        match self.which {
            Which::CurrentSetting => {
                let missing_ok = match args.args.get(1) {
                    Some(flag) => Some(cast(&flag.to_array(rows)?, &DataType::Boolean)?),
                    None => None,
                };
                for row in 0..rows {
                    if names.is_null(row) {
                        out.append_null();
                        continue;
                    }
                    let tolerate = missing_ok.as_ref().is_some_and(|flags| {
                        let flags = flags
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::BooleanArray>()
                            .expect("cast to Boolean");
                        flags.is_valid(row) && flags.value(row)
                    });
                    match settings.get(names.value(row)) {
                        Ok(value) => out.append_value(value),
                        Err(_) if tolerate => out.append_null(),
                        Err(e) => return exec_err!("{}", e.message),
                    }
                }
            }
            Which::SetConfig => {
                let values = strings(&args.args[1], rows)?;
                for row in 0..rows {
                    if names.is_null(row) {
                        return exec_err!("set_config: the setting name must not be NULL");
                    }
                    let value = if values.is_null(row) {
                        ""
                    } else {
                        values.value(row)
                    };
                    if let Err(e) = settings.set(names.value(row), value) {
                        return exec_err!("{}", e.message);
                    }
                    out.append_value(settings.get(names.value(row)).unwrap_or_default());
                }
            }
            Which::SessionUser => unreachable!("answered above"),
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}
