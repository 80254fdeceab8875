//! `multipart/form-data` (RFC 7578), the shape fax APIs take a document in:
//! dispatch's fax adapter encodes its request with it and the sandbox decodes
//! it. Decoding trusts nothing: a body that does not follow the format is an
//! error, never a panic.

/// One field or file.
#[derive(Clone, PartialEq, Eq)]
pub struct Part {
    /// The field name.
    pub name: String,
    /// The file name, for a file.
    pub filename: Option<String>,
    /// The part's media type, when it gave one.
    pub content_type: Option<String>,
    /// The content.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("name", &self.name)
            .field("bytes", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl Part {
    /// A text field.
    pub fn field(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            filename: None,
            content_type: None,
            data: value.as_bytes().to_vec(),
        }
    }

    /// A file.
    pub fn file(name: &str, filename: &str, content_type: &str, data: Vec<u8>) -> Self {
        Self {
            name: name.to_owned(),
            filename: Some(filename.to_owned()),
            content_type: Some(content_type.to_owned()),
            data,
        }
    }

    /// The content as text, for a field.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }
}

/// A body that is not `multipart/form-data`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// The content type names no boundary.
    #[error("the content type is not multipart/form-data with a boundary")]
    NoBoundary,
    /// The body does not follow the format.
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
}

/// `parts` as a body, with its content type. `boundary` must not occur in any
/// part (a random token of 32 hex digits does not, in practice).
pub fn encode(parts: &[Part], boundary: &str) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let name = quoted(&part.name);
        match &part.filename {
            Some(filename) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{}\"\r\n",
                    quoted(filename)
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n").as_bytes(),
            ),
        }
        if let Some(content_type) = &part.content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&part.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A header value's quotes and line breaks escaped, as browsers do.
fn quoted(value: &str) -> String {
    value
        .replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// The boundary named by a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Result<&str, MultipartError> {
    let mut params = content_type.split(';').map(str::trim);
    let media = params.next().unwrap_or_default();
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return Err(MultipartError::NoBoundary);
    }
    params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|b| !b.is_empty() && b.len() <= 70)
        .ok_or(MultipartError::NoBoundary)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The parts of `body`, sent with `content_type`.
pub fn decode(content_type: &str, body: &[u8]) -> Result<Vec<Part>, MultipartError> {
    let boundary = boundary(content_type)?;
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let start = find(body, delimiter).ok_or(MultipartError::Malformed("no first boundary"))?;
    let mut rest = &body[start + delimiter.len()..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or(MultipartError::Malformed("no line break after a boundary"))?;
        let head_end =
            find(rest, b"\r\n\r\n").ok_or(MultipartError::Malformed("a part has no headers"))?;
        let head = std::str::from_utf8(&rest[..head_end])
            .map_err(|_| MultipartError::Malformed("headers are not text"))?;
        let content = &rest[head_end + 4..];
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(delimiter);
        let end = find(content, &closing).ok_or(MultipartError::Malformed("a part never ends"))?;
        parts.push(part(head, content[..end].to_vec())?);
        rest = &content[end + closing.len()..];
    }
}

fn part(head: &str, data: Vec<u8>) -> Result<Part, MultipartError> {
    let mut name = None;
    let mut filename = None;
    let mut content_type = None;
    for line in head.split("\r\n") {
        let Some((header, value)) = line.split_once(':') else {
            return Err(MultipartError::Malformed("a header line has no colon"));
        };
        if header.trim().eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_owned());
        } else if header.trim().eq_ignore_ascii_case("content-disposition") {
            for param in value.split(';').map(str::trim).skip(1) {
                match param.split_once('=') {
                    Some((k, v)) if k.eq_ignore_ascii_case("name") => {
                        name = Some(v.trim_matches('"').to_owned());
                    }
                    Some((k, v)) if k.eq_ignore_ascii_case("filename") => {
                        filename = Some(v.trim_matches('"').to_owned());
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(Part {
        name: name.ok_or(MultipartError::Malformed("a part has no name"))?,
        filename,
        content_type,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BOUNDARY: &str = "b0a1c2d3e4f5a6b7c8d9e0f1a2b3c4d5";

    #[test]
    fn fields_and_files_come_back_as_they_went() {
        let parts = vec![
            Part::field("to", "+15555550100"),
            Part::file(
                "file",
                "fax.pdf",
                "application/pdf",
                b"%PDF-1.7\r\n\0x".to_vec(),
            ),
        ];
        let (content_type, body) = encode(&parts, BOUNDARY);
        assert_eq!(decode(&content_type, &body), Ok(parts));
    }

    #[test]
    fn a_body_that_is_not_multipart_is_an_error() {
        assert_eq!(
            decode("application/json", b"{}"),
            Err(MultipartError::NoBoundary)
        );
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        assert!(decode(&content_type, b"nothing here").is_err());
        let unended =
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx");
        assert!(decode(&content_type, unended.as_bytes()).is_err());
        let nameless =
            format!("--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--");
        assert!(decode(&content_type, nameless.as_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn any_parts_round_trip(
            fields in proptest::collection::vec(("[a-z_]{1,10}", any::<Vec<u8>>()), 0..5)
        ) {
            let parts: Vec<Part> = fields
                .into_iter()
                .map(|(name, data)| Part::file(&name, "f.bin", "application/octet-stream", data))
                .collect();
            let (content_type, body) = encode(&parts, BOUNDARY);
            prop_assert_eq!(decode(&content_type, &body), Ok(parts));
        }

        #[test]
        fn garbage_never_panics(body in any::<Vec<u8>>()) {
            let _ = decode(&format!("multipart/form-data; boundary={BOUNDARY}"), &body);
        }
    }
}
