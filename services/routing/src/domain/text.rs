//! Text folded for matching: lower case, accents removed, anything that is not a
//! letter or a digit turned into a space, runs of spaces collapsed. "¡Alto!",
//! "alto." and "ALTO" all fold to "alto"; "Náuseas" to "nauseas".

/// `text` folded: words of lower-case ASCII letters and digits (and any other
/// letters kept as they are), separated by single spaces.
pub fn fold(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    let mut gap = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        let c = without_accent(c);
        if c.is_alphanumeric() {
            if gap && !folded.is_empty() {
                folded.push(' ');
            }
            gap = false;
            folded.push(c);
        } else {
            gap = true;
        }
    }
    folded
}

/// The letter without its accent, for the Latin letters English and Spanish
/// texts use.
fn without_accent(c: char) -> char {
    match c {
        'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => 'a',
        'é' | 'è' | 'ê' | 'ë' => 'e',
        'í' | 'ì' | 'î' | 'ï' => 'i',
        'ó' | 'ò' | 'ô' | 'ö' | 'õ' => 'o',
        'ú' | 'ù' | 'û' | 'ü' => 'u',
        'ñ' => 'n',
        'ç' => 'c',
        'ý' | 'ÿ' => 'y',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn folds_case_accents_and_punctuation() {
        assert_eq!(fold("¡ALTO!"), "alto");
        assert_eq!(fold("  Náuseas,   y   MAREOS... "), "nauseas y mareos");
        assert_eq!(fold("STOP\u{1F6D1}"), "stop");
        assert_eq!(fold("año"), "ano");
        assert_eq!(fold(""), "");
    }

    proptest! {
        #[test]
        fn folding_is_idempotent_and_never_panics(text in any::<String>()) {
            let once = fold(&text);
            prop_assert_eq!(fold(&once), once.clone());
            prop_assert!(!once.starts_with(' ') && !once.ends_with(' '));
            prop_assert!(!once.contains("  "));
        }
    }
}
