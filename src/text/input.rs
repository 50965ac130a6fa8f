//! Text from outside (`translate`'s stdin): lines from arbitrary bytes, cut to a length the
//! tokenizer handles quickly (BPE merging is quadratic in a word's length).

/// Characters of a line that are tokenized: far more than the 127 tokens a source keeps.
pub const MAX_LINE_CHARS: usize = 2048;

/// Lines read from bytes, and what was repaired on the way.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputLines {
    pub lines: Vec<String>,
    /// Lines that held bytes that are not UTF-8 (each replaced by U+FFFD).
    pub invalid_utf8: usize,
    /// Lines cut to [`MAX_LINE_CHARS`].
    pub cut: usize,
}

/// Splits `bytes` into lines at '\n' (dropping a '\r' before it and the empty piece after a
/// final '\n'), replacing bytes that are not UTF-8 and cutting long lines.
pub fn lines(bytes: &[u8]) -> InputLines {
    let mut out = InputLines::default();
    let mut pieces: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        pieces.pop();
    }
    for piece in pieces {
        let piece = piece.strip_suffix(b"\r").unwrap_or(piece);
        let text = String::from_utf8_lossy(piece);
        if matches!(text, std::borrow::Cow::Owned(_)) {
            out.invalid_utf8 += 1;
        }
        let line = match text.char_indices().nth(MAX_LINE_CHARS) {
            Some((at, _)) => {
                out.cut += 1;
                text[..at].to_string()
            }
            None => text.into_owned(),
        };
        out.lines.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_repaired_and_cut() {
        assert_eq!(lines(b"").lines, Vec::<String>::new());
        assert_eq!(lines(b"a\r\n\nb").lines, ["a", "", "b"]);
        assert_eq!(lines(b"a\n").lines, ["a"]);
        let bad = lines(b"ok\n\xff\xfeab\n");
        assert_eq!((bad.lines[1].as_str(), bad.invalid_utf8), ("\u{FFFD}\u{FFFD}ab", 1));
        let long = lines("é".repeat(MAX_LINE_CHARS + 5).as_bytes());
        assert_eq!((long.lines[0].chars().count(), long.cut), (MAX_LINE_CHARS, 1));
    }
}
