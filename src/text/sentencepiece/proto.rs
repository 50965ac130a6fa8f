//! The parts of SentencePiece's ModelProto (a protobuf message, the .spm / .model file) that
//! tokenizing needs, read with a minimal protobuf reader: no code generation, unknown fields
//! skipped, every length checked against the bytes there are.

use crate::error::{Error, Result};

/// A piece's type (sentencepiece_model.proto's `SentencePiece.Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

/// One vocabulary entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// What a model file says.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelProto {
    pub pieces: Vec<Piece>,
    /// 1 unigram, 2 BPE, 3 word, 4 char.
    pub model_type: u64,
    pub byte_fallback: bool,
    pub treat_whitespace_as_suffix: bool,
    pub unk_surface: String,
    pub normalizer: NormalizerSpec,
}

/// How text is normalized before it is split.
#[derive(Clone, Debug, PartialEq)]
pub struct NormalizerSpec {
    pub name: String,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            name: String::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// A field's value: a varint, fixed 32 or 64 bits, or length-delimited bytes.
enum Value<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

/// Reads the fields of one message in order.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    /// The next (field number, value), `None` at the end; `Err` where the bytes are cut short
    /// or use a wire type protobuf does not have.
    fn field(&mut self) -> std::result::Result<Option<(u64, Value<'a>)>, ()> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint().ok_or(())?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint().ok_or(())?),
            1 => self.take(8).map(|_| Value::Fixed64).ok_or(())?,
            2 => {
                let n = usize::try_from(self.varint().ok_or(())?).map_err(|_| ())?;
                Value::Bytes(self.take(n).ok_or(())?)
            }
            5 => {
                let b = self.take(4).ok_or(())?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            _ => return Err(()),
        };
        Ok(Some((key >> 3, value)))
    }
}

/// Calls `f` on every field of the message in `bytes`.
fn fields<'a>(bytes: &'a [u8], mut f: impl FnMut(u64, Value<'a>)) -> std::result::Result<(), ()> {
    let mut r = Reader { bytes, at: 0 };
    while let Some((number, value)) = r.field()? {
        f(number, value);
    }
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn piece(bytes: &[u8]) -> std::result::Result<Piece, ()> {
    let mut p = Piece { piece: String::new(), score: 0.0, kind: PieceType::Normal };
    let mut kind = 1;
    fields(bytes, |n, v| match (n, v) {
        (1, Value::Bytes(b)) => p.piece = text(b),
        (2, Value::Fixed32(bits)) => p.score = f32::from_bits(bits),
        (3, Value::Varint(t)) => kind = t,
        _ => {}
    })?;
    p.kind = match kind {
        2 => PieceType::Unknown,
        3 => PieceType::Control,
        4 => PieceType::UserDefined,
        5 => PieceType::Unused,
        6 => PieceType::Byte,
        _ => PieceType::Normal,
    };
    Ok(p)
}

fn normalizer(bytes: &[u8]) -> std::result::Result<NormalizerSpec, ()> {
    let mut s = NormalizerSpec::default();
    fields(bytes, |n, v| match (n, v) {
        (1, Value::Bytes(b)) => s.name = text(b),
        (2, Value::Bytes(b)) => s.precompiled_charsmap = b.to_vec(),
        (3, Value::Varint(b)) => s.add_dummy_prefix = b != 0,
        (4, Value::Varint(b)) => s.remove_extra_whitespaces = b != 0,
        (5, Value::Varint(b)) => s.escape_whitespaces = b != 0,
        _ => {}
    })?;
    Ok(s)
}

/// Parses a model file's bytes; `path` names it in errors.
pub fn parse(bytes: &[u8], path: &str) -> Result<ModelProto> {
    let bad = || Error::Format { path: path.to_string(), msg: "is not a SentencePiece model (or is cut short)".into() };
    let mut m = ModelProto {
        pieces: Vec::new(),
        model_type: 1,
        byte_fallback: false,
        treat_whitespace_as_suffix: false,
        unk_surface: " \u{2047} ".into(),
        normalizer: NormalizerSpec::default(),
    };
    let (mut pieces, mut trainer, mut norm) = (Vec::new(), None, None);
    fields(bytes, |n, v| match (n, v) {
        (1, Value::Bytes(b)) => pieces.push(b),
        (2, Value::Bytes(b)) => trainer = Some(b),
        (3, Value::Bytes(b)) => norm = Some(b),
        _ => {}
    })
    .map_err(|_| bad())?;
    m.pieces = pieces.into_iter().map(piece).collect::<std::result::Result<_, _>>().map_err(|_| bad())?;
    if let Some(t) = trainer {
        fields(t, |n, v| match (n, v) {
            (3, Value::Varint(k)) => m.model_type = k,
            (24, Value::Varint(b)) => m.treat_whitespace_as_suffix = b != 0,
            (35, Value::Varint(b)) => m.byte_fallback = b != 0,
            (44, Value::Bytes(b)) => m.unk_surface = text(b),
            _ => {}
        })
        .map_err(|_| bad())?;
    }
    if let Some(n) = norm {
        m.normalizer = normalizer(n).map_err(|_| bad())?;
    }
    if m.pieces.is_empty() {
        return Err(bad());
    }
    Ok(m)
}
