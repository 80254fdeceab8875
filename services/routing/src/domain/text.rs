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

/// What the sender wrote this time in an email, as routing's email contact holds
/// it (the subject, a line break, the body): the body down to the first line of
/// the quoted message it answers ("> …", "On … wrote:", "-----Original
/// Message-----", "From: …"); when that is empty, the subject without its
/// "Re:". An opt-out is read from this, never from our own quoted words.
pub fn email_reply(contact_body: &str) -> String {
    let (subject, body) = contact_body.split_once('\n').unwrap_or((contact_body, ""));
    let mut fresh = Vec::new();
    for line in body.lines() {
        let trimmed = line.trim();
        let lower = trimmed.to_lowercase();
        let quoted = trimmed.starts_with('>')
            || (lower.starts_with("on ") && lower.ends_with("wrote:"))
            || (lower.starts_with("el ") && lower.ends_with("escribió:"))
            || lower.starts_with("-----original message")
            || lower.starts_with("from:")
            || lower.starts_with("de:");
        if quoted {
            break;
        }
        fresh.push(trimmed);
    }
    let fresh = fresh.join(" ").trim().to_owned();
    if !fresh.is_empty() {
        return fresh;
    }
    let mut subject = subject.trim();
    loop {
        let lower = subject.to_lowercase();
        match ["re:", "fwd:", "fw:", "rv:"]
            .iter()
            .find(|p| lower.starts_with(**p))
        {
            Some(prefix) => subject = subject.get(prefix.len()..).unwrap_or("").trim(),
            None => return subject.to_owned(),
        }
    }
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

    #[test]
    fn an_email_reply_is_what_was_written_above_the_quote_else_the_subject() {
        let reply = "Re: Your refill\nUnsubscribe\n\nOn Mon, Nov 23, 2026 Care Team wrote:\n> Reply STOP to stop texts";
        assert_eq!(email_reply(reply), "Unsubscribe");
        assert_eq!(
            email_reply("RE: Re: unsubscribe\n\n> quoted"),
            "unsubscribe"
        );
        assert_eq!(
            email_reply(
                "Re: hola\nya no me escriban por favor\nEl lun, 23 nov, Equipo escribió:\n> hola"
            ),
            "ya no me escriban por favor"
        );
        assert_eq!(email_reply(""), "");
    }

    proptest! {
        #[test]
        fn an_email_reply_never_panics(text in any::<String>()) {
            let _ = email_reply(&text);
        }

        #[test]
        fn folding_is_idempotent_and_never_panics(text in any::<String>()) {
            let once = fold(&text);
            prop_assert_eq!(fold(&once), once.clone());
            prop_assert!(!once.starts_with(' ') && !once.ends_with(' '));
            prop_assert!(!once.contains("  "));
        }
    }
}
