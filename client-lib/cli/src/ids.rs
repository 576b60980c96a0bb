//! Short ids: wherever a consult, family or attachment is named, a unique
//! prefix of at least 6 characters of its id will do, as git takes commits.

use uuid::Uuid;

use crate::error::{CliError, Result};

/// The shortest prefix taken.
pub(crate) const MIN_PREFIX: usize = 6;

/// How ids are shown for people: a prefix that tells ids apart. A
/// time-ordered id (UUID v7: consults, consents, attachments) begins with
/// its creation time, so ids made within a minute share their first 8
/// characters: it shows 13, to the millisecond; a random one (v4:
/// families) shows 8.
pub(crate) fn short(id: &Uuid) -> String {
    let text = id.to_string();
    let len = if id.get_version_num() == 7 { 13 } else { 8 };
    text[..len].to_owned()
}

/// The one id among `known` that `given` names: the whole id, or a unique
/// prefix of at least [`MIN_PREFIX`] characters. `what` names the kind
/// ("consult") in errors.
///
/// # Errors
/// Usage when the prefix is too short or ambiguous (listing the matches),
/// not found when nothing matches.
pub(crate) fn resolve(given: &str, known: &[Uuid], what: &str) -> Result<Uuid> {
    if let Ok(id) = Uuid::try_parse(given) {
        return Ok(id);
    }
    let prefix = given.to_ascii_lowercase();
    if prefix.len() < MIN_PREFIX || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(CliError::usage(format!(
            "{given:?} is not a {what} id or a prefix of at least {MIN_PREFIX} characters of one"
        )));
    }
    let mut matches: Vec<Uuid> = known
        .iter()
        .filter(|id| id.to_string().starts_with(&prefix))
        .copied()
        .collect();
    matches.sort();
    matches.dedup();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(CliError::new(
            crate::error::Class::NotFound,
            format!("no {what} of yours starts with {given}"),
        )),
        many => Err(CliError::usage(format!(
            "{given} names more than one {what}: {}",
            many.iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .hint("give more characters")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_prefix_names_one_and_an_ambiguous_one_lists_them() {
        let a = Uuid::parse_str("0193a5b0-1111-7000-8000-000000000001").unwrap();
        let b = Uuid::parse_str("0193a5b0-2222-7000-8000-000000000002").unwrap();
        let c = Uuid::parse_str("7e57c0de-3333-4000-8000-000000000003").unwrap();
        assert_eq!(short(&c), "7e57c0de");
        assert_eq!(short(&a), "0193a5b0-1111");
        let known = [a, b, c];
        assert_eq!(resolve("7e57c0", &known, "consult").unwrap(), c);
        assert_eq!(resolve("0193a5b0-11", &known, "consult").unwrap(), a);
        assert_eq!(resolve(&b.to_string(), &[], "consult").unwrap(), b);
        let ambiguous = resolve("0193a5", &known, "consult").unwrap_err();
        assert!(
            ambiguous.message.contains(&a.to_string())
                && ambiguous.message.contains(&b.to_string())
        );
        assert_eq!(
            resolve("7e57", &known, "consult").unwrap_err().exit_code(),
            2
        );
        assert_eq!(
            resolve("abcdef", &known, "consult")
                .unwrap_err()
                .exit_code(),
            3
        );
    }
}
