//! Text for XML, SVG and TwiML: the five characters markup gives meaning to, escaped.

/// `text` safe inside an element or a double-quoted attribute.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
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
}
