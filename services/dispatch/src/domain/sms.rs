//! How long an SMS is on the wire: the encoding a body needs and how many
//! segments it takes, which is what carriers bill and what a phone stitches back.
//!
//! A body written only in the GSM 03.38 alphabet is sent 7 bits a character: 160
//! in one segment, 153 a segment when split (the rest carries the header that
//! joins them). The extension table (`€ [ ] { } \ ^ ~ |` and form feed) costs two
//! septets, and a split never separates the two. Any other character forces UCS-2:
//! 70 UTF-16 units in one segment, 67 a segment when split, and a split never
//! separates the halves of a surrogate pair. Of Spanish's letters, `é ñ ü ¿ ¡`
//! are in the GSM alphabet but `á í ó ú` are not: one of them forces UCS-2, so a
//! Spanish message can take more than twice the segments of its English twin.

/// The encoding a body is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 03.38 7-bit alphabet.
    Gsm7,
    /// UTF-16, for anything outside it.
    Ucs2,
}

/// A body's size on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsSize {
    /// The encoding it needs.
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 units (UCS-2).
    pub units: usize,
    /// Segments it is sent in (at least 1, even for an empty body).
    pub segments: usize,
}

const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXTENSION: &str = "\u{000C}^{}\\[~]|€";

/// Septets a character takes in GSM-7, or None if it needs UCS-2.
fn septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The encoding and segments `body` takes.
pub fn measure(body: &str) -> SmsSize {
    let sizes: Option<Vec<usize>> = body.chars().map(septets).collect();
    match sizes {
        Some(sizes) => size(Encoding::Gsm7, &sizes, 160, 153),
        None => {
            let sizes: Vec<usize> = body.chars().map(char::len_utf16).collect();
            size(Encoding::Ucs2, &sizes, 70, 67)
        }
    }
}

/// Fits characters of the given sizes into segments: all in one if they fit
/// `single`, else `each` per segment without splitting a character.
fn size(encoding: Encoding, sizes: &[usize], single: usize, each: usize) -> SmsSize {
    let units = sizes.iter().sum();
    let segments = if units <= single {
        1
    } else {
        let mut segments = 1;
        let mut used = 0;
        for &size in sizes {
            if used + size > each {
                segments += 1;
                used = 0;
            }
            used += size;
        }
        segments
    };
    SmsSize {
        encoding,
        units,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn plain_english_is_gsm7_and_160_fit_in_one_segment() {
        let body = "a".repeat(160);
        assert_eq!(
            measure(&body),
            SmsSize {
                encoding: Encoding::Gsm7,
                units: 160,
                segments: 1
            }
        );
        assert_eq!(measure(&"a".repeat(161)).segments, 2);
        assert_eq!(measure(&"a".repeat(306)).segments, 2, "153 a segment");
        assert_eq!(measure(&"a".repeat(307)).segments, 3);
        assert_eq!(measure("").segments, 1);
    }

    #[test]
    fn extension_characters_take_two_septets_and_are_never_split() {
        assert_eq!(measure("Price: 5€").units, 10);
        // 152 plain then a euro sign: it cannot take the last septet of the
        // first segment, so it opens the second.
        let body = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        let size = measure(&body);
        assert_eq!((size.units, size.segments), (164, 2));
        let body = format!("{}€", "a".repeat(152));
        assert_eq!(
            measure(&body).segments,
            1,
            "154 septets fit one segment of 160"
        );
    }

    #[test]
    fn spanish_with_acute_accents_needs_ucs2_but_enye_does_not() {
        let enye = measure("Mañana, señora. ¿Qué tal? ¡Adiós!");
        assert_eq!(enye.encoding, Encoding::Ucs2, "ó is not in GSM-7");
        let gsm = measure("Mañana, señor. ¿Qué tal?");
        assert_eq!(gsm.encoding, Encoding::Gsm7, "ñ, é, ¿ are");
        let spanish = "Hola, le recordamos su cita: responda SÍ o NO. ".repeat(2);
        let size = measure(&spanish);
        assert_eq!(size.encoding, Encoding::Ucs2);
        assert_eq!((size.units, size.segments), (94, 2), "over 70: split at 67");
    }

    #[test]
    fn ucs2_counts_utf16_units_and_keeps_surrogate_pairs_whole() {
        assert_eq!(measure("💊").units, 2);
        let body = format!("{}💊", "á".repeat(66));
        // 66 + 2 = 68 units: over 70? no, fits one segment.
        assert_eq!(measure(&body).segments, 1);
        let body = format!("{}💊{}", "á".repeat(66), "á".repeat(10));
        let size = measure(&body);
        assert_eq!((size.units, size.segments), (78, 2));
    }

    proptest! {
        /// Whatever the text, the segments are enough to carry it and no more
        /// than one per started segment's worth of units.
        #[test]
        fn segments_carry_the_body_and_no_more(body in "\\PC{0,400}") {
            let size = measure(&body);
            let (single, each) = match size.encoding {
                Encoding::Gsm7 => (160, 153),
                Encoding::Ucs2 => (70, 67),
            };
            prop_assert!(size.segments >= 1);
            if size.units <= single {
                prop_assert_eq!(size.segments, 1);
            } else {
                prop_assert!(size.segments * each >= size.units);
                // A split wastes at most one unit per boundary (a 2-unit character).
                prop_assert!((size.segments - 1) * (each - 1) < size.units);
            }
        }
    }
}
