//! A fax or a letter as it goes out: a cover page, then the body, as a PDF of US
//! Letter pages in Courier (a fixed width, so lines wrap exactly and survive a
//! fax machine's resolution). A letter's first page says the same as a fax's
//! cover, without the fax's title, and the print-and-mail provider adds the
//! address page in front. Pure: the same facts always make the same bytes.
//!
//! The PDF uses the standard Courier font with WinAnsi encoding, which holds
//! every letter English and Spanish need; a character outside it prints as `?`.

use chrono::NaiveDate;
use pdf_writer::{Content, Finish as _, Name, Pdf, Rect, Ref, Str};
use touchpoint_proto::v1::Language;

/// US Letter, in points.
const PAGE_WIDTH: f32 = 612.0;
const PAGE_HEIGHT: f32 = 792.0;
const MARGIN: f32 = 72.0;
const FONT_SIZE: f32 = 11.0;
const LEADING: f32 = 14.0;
/// Courier's glyphs are 0.6 em wide: 6.6 pt at 11 pt, so 70 fit in 468 pt.
pub const LINE_CHARS: usize = 70;
/// Lines that fit between the margins.
pub const PAGE_LINES: usize = ((PAGE_HEIGHT - 2.0 * MARGIN) / LEADING) as usize;

/// What is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A fax to the prescriber's office.
    Fax,
    /// A letter to the patient.
    Letter,
}

/// What the cover page says (patient data: `Debug` shows none of it).
#[derive(Clone, Copy)]
pub struct Cover<'a> {
    /// A fax or a letter.
    pub kind: Kind,
    /// Who the fax is for.
    pub to: &'a str,
    /// Who sends it: the program.
    pub from: &'a str,
    /// What it is about, when the template set a subject.
    pub subject: Option<&'a str>,
    /// The day it is sent.
    pub date: NaiveDate,
    /// The language of the cover's labels.
    pub language: Language,
}

impl std::fmt::Debug for Cover<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cover")
            .field("kind", &self.kind)
            .field("date", &self.date)
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

/// A rendered fax or letter.
#[derive(Clone, PartialEq, Eq)]
pub struct FaxDocument {
    /// The PDF.
    pub pdf: Vec<u8>,
    /// Its pages, the cover included.
    pub pages: u32,
}

impl std::fmt::Debug for FaxDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaxDocument")
            .field("bytes", &self.pdf.len())
            .field("pages", &self.pages)
            .finish()
    }
}

struct Labels {
    title: Option<&'static str>,
    to: &'static str,
    from: &'static str,
    date: &'static str,
    pages: &'static str,
    including: &'static str,
    subject: &'static str,
    confidential: &'static str,
    notice: &'static str,
}

fn labels(kind: Kind, language: Language) -> Labels {
    match (kind, language) {
        (Kind::Letter, Language::Es) => Labels {
            title: None,
            to: "Para:",
            from: "De:",
            date: "Fecha:",
            pages: "Paginas:",
            including: "incluida esta",
            subject: "Asunto:",
            confidential: "PERSONAL Y CONFIDENCIAL",
            notice: "Esta carta contiene informacion de salud destinada solo a la persona \
                     nombrada arriba. Si la recibio por error, devuelvala al remitente.",
        },
        (Kind::Letter, _) => Labels {
            title: None,
            to: "To:",
            from: "From:",
            date: "Date:",
            pages: "Pages:",
            including: "including this one",
            subject: "Re:",
            confidential: "PERSONAL AND CONFIDENTIAL",
            notice: "This letter holds health information meant only for the person named \
                     above. If it reached you by mistake, please return it to the sender.",
        },
        (Kind::Fax, Language::Es) => Labels {
            title: Some("FAX"),
            to: "Para:",
            from: "De:",
            date: "Fecha:",
            pages: "Paginas:",
            including: "incluida esta portada",
            subject: "Asunto:",
            confidential: "CONFIDENCIAL",
            notice: "Este fax contiene informacion de salud destinada solo a la persona \
                     nombrada arriba. Si lo recibio por error, avise al remitente de \
                     inmediato y destruyalo.",
        },
        (Kind::Fax, _) => Labels {
            title: Some("FAX"),
            to: "To:",
            from: "From:",
            date: "Date:",
            pages: "Pages:",
            including: "including this cover",
            subject: "Re:",
            confidential: "CONFIDENTIAL",
            notice: "This fax holds health information meant only for the person named \
                     above. If it reached you by mistake, please tell the sender at once \
                     and destroy it.",
        },
    }
}

/// The cover page and `body` as a fax or a letter.
pub fn render(cover: &Cover<'_>, body: &str) -> FaxDocument {
    let body_pages: Vec<Vec<String>> = wrap(body)
        .chunks(PAGE_LINES)
        .map(<[String]>::to_vec)
        .collect();
    let pages = 1 + body_pages.len().max(1) as u32;
    let mut all = vec![cover_lines(cover, pages)];
    if body_pages.is_empty() {
        all.push(Vec::new());
    } else {
        all.extend(body_pages);
    }
    FaxDocument {
        pdf: write_pdf(&all),
        pages,
    }
}

fn cover_lines(cover: &Cover<'_>, pages: u32) -> Vec<String> {
    let l = labels(cover.kind, cover.language);
    let field = |label: &str, value: &str| wrap(&format!("{label:<9}{value}"));
    let mut lines = Vec::new();
    if let Some(title) = l.title {
        lines.extend([title.to_owned(), String::new()]);
    }
    lines.extend(field(l.to, cover.to));
    lines.extend(field(l.from, cover.from));
    lines.extend(field(l.date, &cover.date.format("%Y-%m-%d").to_string()));
    lines.extend(field(l.pages, &format!("{pages} ({})", l.including)));
    if let Some(subject) = cover.subject {
        lines.extend(field(l.subject, subject));
    }
    lines.push(String::new());
    lines.push(l.confidential.to_owned());
    lines.extend(wrap(l.notice));
    lines.truncate(PAGE_LINES);
    lines
}

/// `text` in lines of at most [`LINE_CHARS`] characters: words wrap, a word
/// longer than a line is cut, blank lines stay, tabs become spaces.
pub fn wrap(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        let mut width = 0;
        for word in paragraph.split([' ', '\t']).filter(|w| !w.is_empty()) {
            let mut word: Vec<char> = word.chars().filter(|c| !c.is_control()).collect();
            if width > 0 && width + 1 + word.len() > LINE_CHARS {
                lines.push(std::mem::take(&mut line));
                width = 0;
            }
            while word.len() > LINE_CHARS - width {
                let rest = word.split_off(LINE_CHARS - width);
                line.extend(word);
                lines.push(std::mem::take(&mut line));
                width = 0;
                word = rest;
            }
            if width > 0 {
                line.push(' ');
                width += 1;
            }
            width += word.len();
            line.extend(word);
        }
        lines.push(line);
    }
    lines
}

/// `text` in WinAnsi, the encoding of the standard fonts: Latin-1 and the common
/// typographic marks; anything else is `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '…' => 0x85,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            _ => b'?',
        })
        .collect()
}

fn write_pdf(pages: &[Vec<String>]) -> Vec<u8> {
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let font = Ref::new(3);
    let font_name = Name(b"F1");
    // Each page is two objects: the page and its content.
    let page_ref = |i: usize| Ref::new(4 + 2 * i as i32);
    let content_ref = |i: usize| Ref::new(5 + 2 * i as i32);
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids((0..pages.len()).map(page_ref))
        .count(pages.len() as i32);
    pdf.type1_font(font)
        .base_font(Name(b"Courier"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    for (i, lines) in pages.iter().enumerate() {
        let mut page = pdf.page(page_ref(i));
        page.media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT))
            .parent(tree)
            .contents(content_ref(i));
        page.resources().fonts().pair(font_name, font);
        page.finish();
        let mut content = Content::new();
        content.begin_text();
        content.set_font(font_name, FONT_SIZE);
        content.set_leading(LEADING);
        content.next_line(MARGIN, PAGE_HEIGHT - MARGIN - FONT_SIZE);
        for (n, line) in lines.iter().enumerate() {
            if n > 0 {
                content.next_line_using_leading();
            }
            content.show(Str(&win_ansi(line)));
        }
        content.end_text();
        pdf.stream(content_ref(i), &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cover(language: Language) -> Cover<'static> {
        Cover {
            kind: Kind::Fax,
            to: "Ana Garcia",
            from: "Adherence Program",
            subject: Some("Welcome"),
            date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap_or_default(),
            language,
        }
    }

    #[test]
    fn a_short_body_is_a_cover_and_one_page() {
        let fax = render(&cover(Language::En), "Hello Ana.\n\nCall us any time.");
        assert_eq!(fax.pages, 2);
        assert!(fax.pdf.starts_with(b"%PDF-"));
        assert!(fax.pdf.windows(5).any(|w| w == b"%%EOF"));
    }

    #[test]
    fn a_long_body_runs_onto_more_pages() {
        let body = "line\n".repeat(PAGE_LINES * 2 + 1);
        assert_eq!(render(&cover(Language::En), &body).pages, 1 + 3);
        let full = "line\n".repeat(PAGE_LINES);
        assert_eq!(render(&cover(Language::En), &full).pages, 1 + 1);
    }

    #[test]
    fn a_letter_is_not_titled_a_fax_and_asks_to_be_returned() {
        let letter = Cover {
            kind: Kind::Letter,
            ..cover(Language::En)
        };
        let lines = cover_lines(&letter, 2);
        assert!(!lines.iter().any(|l| l.contains("FAX")), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("return it to the sender")));
        assert_eq!(render(&letter, "Hello Ana.").pages, 2);
    }

    #[test]
    fn an_empty_body_still_has_a_page_after_the_cover() {
        assert_eq!(render(&cover(Language::Es), "").pages, 2);
    }

    #[test]
    fn spanish_letters_are_kept_and_the_rest_become_question_marks() {
        assert_eq!(
            win_ansi("¿Cómo está, Ñandú?"),
            b"\xbfC\xf3mo est\xe1, \xd1and\xfa?"
        );
        assert_eq!(win_ansi("日本 “x”"), b"?? \x93x\x94");
    }

    #[test]
    fn words_wrap_and_long_words_are_cut() {
        let long = "x".repeat(LINE_CHARS + 5);
        let lines = wrap(&format!("a b\n\n{long} c"));
        assert_eq!(lines[0], "a b");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2].chars().count(), LINE_CHARS);
        assert_eq!(lines[3], "xxxxx c");
    }

    #[test]
    fn debug_shows_no_names() {
        let shown = format!("{:?}", cover(Language::En));
        assert!(!shown.contains("Ana"));
    }

    proptest! {
        #[test]
        fn every_line_fits_and_no_letter_is_lost(text in "[a-zA-Z0-9 áéñ\n\t]{0,600}") {
            let lines = wrap(&text);
            for line in &lines {
                prop_assert!(line.chars().count() <= LINE_CHARS);
            }
            let kept: String = lines.concat().chars().filter(|c| !c.is_whitespace()).collect();
            let given: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            prop_assert_eq!(kept, given);
        }

        #[test]
        fn any_text_renders(text in any::<String>()) {
            let fax = render(&cover(Language::En), &text);
            prop_assert!(fax.pages >= 2);
        }
    }
}
