//! `tuneserve train`'s hyperparameter flags, made from the hyperparameters'
//! own definition so nothing is written twice: one flag per field of
//! [`Hyperparameters`] (`learning_rate` → `--learning-rate`), its help the
//! field's documentation (as the OpenAPI document shows it), its default the
//! library's, its environment variable `TUNESERVE_LEARNING_RATE`. The values
//! given are laid over the defaults and checked as the API checks a job's.

use clap::{Arg, ArgMatches, Command};
use serde_json::{Map, Value};

use crate::train::Hyperparameters;

/// A field of [`Hyperparameters`]: its name, default, documentation and, for
/// a choice among words, the words.
struct Field {
    name: String,
    default: Value,
    help: String,
    choices: Vec<String>,
}

/// The fields of [`Hyperparameters`].
fn fields() -> Vec<Field> {
    let defaults = serde_json::to_value(Hyperparameters::default()).unwrap_or_default();
    let schema = serde_json::to_value(<Hyperparameters as utoipa::PartialSchema>::schema())
        .unwrap_or_default();
    let Some(defaults) = defaults.as_object() else {
        return Vec::new();
    };
    defaults
        .iter()
        .map(|(name, default)| {
            let property = &schema["properties"][name];
            let doc = property["description"].as_str().unwrap_or_default();
            Field {
                name: name.clone(),
                default: default.clone(),
                help: doc.replace('\n', " "),
                choices: choices(property),
            }
        })
        .collect()
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
    for Field {
        name,
        default,
        help,
        choices,
    } in fields()
    {
        let env = format!("TUNESERVE_{}", name.to_uppercase());
        let mut arg = Arg::new(name.clone())
            .long(name.replace('_', "-"))
            .env(env)
            .help(help)
            .help_heading("Hyperparameters")
            .value_name("VALUE");
        if !choices.is_empty() {
            arg = arg.value_parser(clap::builder::PossibleValuesParser::new(choices));
        }
        arg = match default {
            Value::Null => arg,
            Value::String(s) => arg.default_value(s),
            other => arg.default_value(other.to_string()),
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// The hyperparameters `matches` (of the `train` subcommand) give, over the
/// defaults and validated; the error names the flag at fault.
pub(crate) fn read(matches: &ArgMatches) -> Result<Hyperparameters, String> {
    let mut given = Map::new();
    for Field { name, .. } in fields() {
        if let Some(text) = matches.get_one::<String>(&name) {
            // `3`, `5e-5`, `true` are JSON; anything else (`linear`) is a word.
            let value = serde_json::from_str(text).unwrap_or_else(|_| Value::from(text.as_str()));
            given.insert(name, value);
        }
    }
    let flag = |field: &str| format!("--{}", field.replace('_', "-"));
    // Each value alone first, so that a type error names its own flag.
    for (name, value) in &given {
        let alone = Value::Object(Map::from_iter([(name.clone(), value.clone())]));
        if let Err(e) = serde_json::from_value::<Hyperparameters>(alone) {
            return Err(format!("{}: {e}", flag(name)));
        }
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
        let help = add(Command::new("train")).render_help().to_string();
        assert!(help.contains("--learning-rate"), "{help}");
        assert!(help.contains("[default: 0.00005]"), "{help}");
        assert!(help.contains("TUNESERVE_LEARNING_RATE"), "{help}");
    }
}
