//! Text for XML, SVG and TwiML: the five characters markup gives meaning to, escaped.

/// `text` safe inside an element or a double-quoted attribute.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A TwiML document (Twilio's voice markup) holding `verbs`, already markup.
pub fn twiml(verbs: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>{verbs}</Response>")
}

/// The TwiML that ends a call.
pub fn twiml_hang_up() -> String {
    twiml("<Hangup/>")
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_in_text_stays_text() {
        assert_eq!(
            super::escape(r#"<b a="1">Ana & 'Co'</b>"#),
            "&lt;b a=&quot;1&quot;&gt;Ana &amp; &apos;Co&apos;&lt;/b&gt;"
        );
    }

    #[test]
    fn a_hang_up_is_a_whole_twiml_document() {
        assert_eq!(
            super::twiml_hang_up(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>"
        );
    }
}
