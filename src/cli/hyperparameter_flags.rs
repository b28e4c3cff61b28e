//! `tuneserve train`'s hyperparameter flags, made from the hyperparameters'
//! own definition so nothing is written twice: one flag per field of
//! [`Hyperparameters`] (`learning_rate` → `--learning-rate`), its help the
//! field's documentation (as the OpenAPI document shows it), its default the
//! library's, its environment variable `TUNESERVE_LEARNING_RATE`. The values
//! given are laid over the defaults and checked as the API checks a job's.

use clap::{Arg, ArgMatches, Command};
use serde_json::{Map, Value};

use crate::train::Hyperparameters;

/// A field of [`Hyperparameters`]: its name (`lora_r` for the field `r` of
/// `lora`), default, documentation and, for a choice among words, the words;
/// `list` when it takes several (comma-separated on the command line).
struct Field {
    name: String,
    path: Vec<String>,
    default: Value,
    help: String,
    choices: Vec<String>,
    list: bool,
}

/// The fields of [`Hyperparameters`], those of a nested object (`lora`) one
/// by one.
fn fields() -> Vec<Field> {
    let defaults = serde_json::to_value(Hyperparameters::default()).unwrap_or_default();
    let schema = serde_json::to_value(<Hyperparameters as utoipa::PartialSchema>::schema())
        .unwrap_or_default();
    let mut out = Vec::new();
    collect(&defaults, &schema, &[], &mut out);
    out
}

fn collect(defaults: &Value, schema: &Value, path: &[String], out: &mut Vec<Field>) {
    let Some(defaults) = defaults.as_object() else {
        return;
    };
    for (name, default) in defaults {
        let property = &schema["properties"][name];
        let path: Vec<String> = path.iter().cloned().chain([name.clone()]).collect();
        if default.is_object() {
            collect(default, property, &path, out);
            continue;
        }
        let doc = property["description"].as_str().unwrap_or_default();
        out.push(Field {
            name: path.join("_"),
            path,
            default: default.clone(),
            help: doc.replace('\n', " "),
            choices: choices(&property["items"])
                .into_iter()
                .chain(choices(property))
                .collect(),
            list: default.is_array(),
        });
    }
}

/// The words a property's schema allows (its `enum`, directly or in a
/// `oneOf`); empty when it is not a choice among words.
fn choices(property: &Value) -> Vec<String> {
    let nested = property["oneOf"].as_array().into_iter().flatten();
    std::iter::once(property)
        .chain(nested)
        .filter_map(|p| p["enum"].as_array())
        .flatten()
        .filter_map(|c| c.as_str().map(String::from))
        .collect()
}

/// Adds the hyperparameter flags to `cmd` (the `train` subcommand).
pub(crate) fn add(mut cmd: Command) -> Command {
    for field in fields() {
        let env = format!("TUNESERVE_{}", field.name.to_uppercase());
        let mut arg = Arg::new(field.name.clone())
            .long(field.name.replace('_', "-"))
            .env(env)
            .help(field.help)
            .help_heading("Hyperparameters")
            .value_name("VALUE");
        if field.list {
            arg = arg.value_delimiter(',').action(clap::ArgAction::Append);
        }
        if !field.choices.is_empty() {
            arg = arg.value_parser(clap::builder::PossibleValuesParser::new(field.choices));
        }
        arg = match field.default {
            Value::Null => arg,
            Value::String(s) => arg.default_value(s),
            Value::Array(items) => {
                let words: Vec<String> = items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
                    .collect();
                arg.default_value(words.join(","))
            }
            other => arg.default_value(other.to_string()),
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// A flag's text as JSON: `3`, `5e-5`, `true` are JSON; anything else
/// (`linear`) is a word.
fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::from(text))
}

/// Puts `value` at `path` in `root`, making the objects on the way.
fn insert(root: &mut Map<String, Value>, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("a field has a name");
    let mut map = root;
    for p in parents {
        let next = map
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        map = next.as_object_mut().expect("nested fields are objects");
    }
    map.insert(last.clone(), value);
}

/// The hyperparameters `matches` (of the `train` subcommand) give, over the
/// defaults and validated; the error names the flag at fault.
pub(crate) fn read(matches: &ArgMatches) -> Result<Hyperparameters, String> {
    let flag = |field: &str| format!("--{}", field.replace(['_', '.'], "-"));
    let mut given = Map::new();
    for field in fields() {
        let Some(values) = matches.get_many::<String>(&field.name) else {
            continue;
        };
        let values: Vec<Value> = values.map(|t| json_of(t)).collect();
        let value = match field.list {
            true => Value::Array(values),
            false => values.into_iter().next().unwrap_or_default(),
        };
        // Each value alone first, so that a type error names its own flag.
        let mut alone = Map::new();
        insert(&mut alone, &field.path, value.clone());
        if let Err(e) = serde_json::from_value::<Hyperparameters>(Value::Object(alone)) {
            return Err(format!("{}: {e}", flag(&field.name)));
        }
        insert(&mut given, &field.path, value);
    }
    let h: Hyperparameters = serde_json::from_value(Value::Object(given))
        .map_err(|e| format!("hyperparameter flags: {e}"))?;
    h.validate()
        .map_err(|e| format!("{}: {}", flag(e.field), e.reason))?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Hyperparameters, String> {
        let cmd = add(Command::new("train").no_binary_name(true));
        read(&cmd.try_get_matches_from(args).map_err(|e| e.to_string())?)
    }

    #[test]
    fn flags_overlay_the_library_defaults() {
        assert_eq!(parse(&[]).unwrap(), Hyperparameters::default());
        let h = parse(&[
            "--batch-size",
            "1",
            "--gradient-accumulation-steps",
            "4",
            "--shuffle",
            "false",
            "--padding",
            "max_length",
            "--metric-for-best-model",
            "macro_f1",
            "--max-length",
            "128",
            "--learning-rate",
            "5e-4",
        ])
        .unwrap();
        assert_eq!(
            (h.batch_size, h.gradient_accumulation_steps, h.shuffle),
            (1, 4, false)
        );
        assert_eq!((h.max_length, h.learning_rate), (Some(128), 5e-4));
        assert_eq!(h.epochs, Hyperparameters::default().epochs);
        let h = parse(&["--precision", "bf16"]).unwrap();
        assert_eq!(h.precision, crate::model::Precision::Bf16);
        let h = parse(&[
            "--method",
            "lora",
            "--lora-r",
            "4",
            "--lora-target-modules",
            "c_attn,mlp.c_proj",
        ])
        .unwrap();
        assert_eq!(
            (h.method, h.lora.r, h.lora.alpha),
            (crate::train::Method::Lora, 4, 16.0)
        );
        assert_eq!(h.lora.target_modules.len(), 2);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = parse(&["--epochs", "0"]).unwrap_err();
        assert!(err.starts_with("--epochs: "), "{err}");
        let err = parse(&["--padding", "sideways"]).unwrap_err();
        assert!(
            err.contains("--padding") && err.contains("max_length"),
            "{err}"
        );
        let err = parse(&["--lora-r", "0"]).unwrap_err();
        assert!(err.starts_with("--lora-r: "), "{err}");
        let err = parse(&["--lora-target-modules", "wte"]).unwrap_err();
        assert!(err.contains("--lora-target-modules"), "{err}");
        let err = parse(&["--precision", "fp16"]).unwrap_err();
        assert!(err.contains("--precision") && err.contains("bf16"), "{err}");
        let help = add(Command::new("train")).render_help().to_string();
        assert!(help.contains("--learning-rate"), "{help}");
        assert!(help.contains("[default: 0.00005]"), "{help}");
        assert!(help.contains("TUNESERVE_LEARNING_RATE"), "{help}");
    }
}
