//! `${VAR}` in config strings: secrets stay out of the file.

use std::borrow::Cow;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::Collector;

/// Replace `${VAR}` in every string value with the environment variable's value; `$${` is a
/// literal `${`. An unset variable is an error at the string's position.
pub fn expand_env(table: &mut DeTable<'_>, path: &str, errors: &mut Collector<'_>) {
    for (key, value) in table.iter_mut() {
        let key_path = join(path, key.get_ref());
        expand_value(value, &key_path, errors);
    }
}

fn expand_value(value: &mut Spanned<DeValue<'_>>, path: &str, errors: &mut Collector<'_>) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(text) if text.contains('$') => {
            match expand_str(text, &|name| std::env::var(name).ok()) {
                Ok(expanded) => *text = Cow::Owned(expanded),
                Err(message) => errors.error(Some(span), path, message),
            }
        }
        DeValue::Table(table) => expand_env(table, path, errors),
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{path}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

/// Expand `${NAME}` with `lookup` (the environment, outside tests).
fn expand_str(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(literal) = after.strip_prefix("${") {
            out.push_str("${");
            rest = literal;
        } else if let Some(name_and_rest) = after.strip_prefix('{') {
            let Some(end) = name_and_rest.find('}') else {
                return Err("`${` without a closing `}`; write `$${` for a literal `${`".into());
            };
            let name = &name_and_rest[..end];
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(format!(
                        "the environment variable `{name}` is not set (or not UTF-8)"
                    ));
                }
            }
            rest = &name_and_rest[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_set_variables_and_keeps_literals() {
        let env = |name: &str| (name == "PATCHBAY_TEST_SECRET").then(|| "s3cret".to_owned());
        assert_eq!(
            expand_str("a ${PATCHBAY_TEST_SECRET} $${x} $5", &env).as_deref(),
            Ok("a s3cret ${x} $5")
        );
        assert!(
            expand_str("${PATCHBAY_TEST_UNSET_VARIABLE}", &env)
                .expect_err("unset")
                .contains("PATCHBAY_TEST_UNSET_VARIABLE")
        );
        assert!(expand_str("${oops", &env).is_err());
    }
}
