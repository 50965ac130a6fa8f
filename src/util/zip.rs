//! Zip archives of a checkpoint's files: what the browser page downloads and takes back, and
//! what `Vit::load` accepts in place of a directory. Written uncompressed (safetensors barely
//! compress); read stored or deflated (a user may re-zip), within size limits, every entry's
//! CRC checked. No zip64: an archive or file of 4 GiB or more is refused.

use crate::error::{Error, Result};
use std::io::Read;

/// The most bytes all entries of an archive may expand to.
pub const MAX_UNZIPPED: u64 = 4 << 30;

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;

/// CRC-32 (IEEE), as zip records it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// An archive holding `files` (name, bytes), uncompressed.
pub fn write(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let too_big = || Error::Config("a zip of 4 GiB or more, or of 65535 files, is not supported".into());
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, bytes) in files {
        let size = u32::try_from(bytes.len()).map_err(|_| too_big())?;
        let offset = u32::try_from(out.len()).map_err(|_| too_big())?;
        let header = |sig: u32| {
            let mut h = sig.to_le_bytes().to_vec();
            if sig == CENTRAL {
                h.extend(20u16.to_le_bytes()); // made by: version 2.0
            }
            // Version 2.0 needed; UTF-8 names; stored; no time; crc; sizes; name length.
            for v in [20u16, 0x0800, 0, 0, 0x21] {
                h.extend(v.to_le_bytes());
            }
            h.extend(crc32(bytes).to_le_bytes());
            h.extend(size.to_le_bytes());
            h.extend(size.to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes());
            h
        };
        out.extend(header(LOCAL));
        out.extend(name.as_bytes());
        out.extend(bytes);
        central.extend(header(CENTRAL));
        // Comment length, disk, internal and external attributes, the local header's offset.
        central.extend([0u8; 10]);
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let count = u16::try_from(files.len()).map_err(|_| too_big())?;
    let (cd_size, cd_offset) = (central.len() as u32, u32::try_from(out.len()).map_err(|_| too_big())?);
    out.extend(central);
    out.extend(END.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend(count.to_le_bytes());
    out.extend(count.to_le_bytes());
    out.extend(cd_size.to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    Ok(out)
}

/// The files of an archive (name without folders, bytes), directories left out. `path` names
/// the archive in errors.
pub fn read(bytes: &[u8], path: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let files = read_with_paths(bytes, path)?;
    Ok(files.into_iter().map(|(name, b)| (name.rsplit('/').next().unwrap_or(&name).to_string(), b)).collect())
}

/// [`read`], each file under its whole path in the archive.
pub fn read_with_paths(bytes: &[u8], path: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let bad = |msg: String| Error::Format { path: path.to_string(), msg };
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let truncated = || bad("is not a zip archive (or is cut short)".into());
    // The end record is in the last 22 + 65535 bytes (a comment may follow it).
    let from = bytes.len().saturating_sub(22 + 65_535);
    let end = (from..bytes.len().saturating_sub(21)).rev().find(|&i| u32_at(i) == Some(END)).ok_or_else(truncated)?;
    let count = u16_at(end + 10).ok_or_else(truncated)?;
    let mut at = u32_at(end + 16).ok_or_else(truncated)? as usize;
    let (mut files, mut total) = (Vec::new(), 0u64);
    for _ in 0..count {
        if u32_at(at) != Some(CENTRAL) {
            return Err(truncated());
        }
        let field = |off: usize| u16_at(at + off).ok_or_else(truncated);
        let (method, name_len, extra_len, comment_len) = (field(10)?, field(28)?, field(30)?, field(32)?);
        let word = |off: usize| u32_at(at + off).ok_or_else(truncated);
        let (crc, packed, size, local) = (word(16)?, word(20)? as usize, word(24)?, word(42)? as usize);
        let name = bytes.get(at + 46..at + 46 + name_len).ok_or_else(truncated)?;
        let name = String::from_utf8_lossy(name).into_owned();
        at += 46 + name_len + extra_len + comment_len;
        if name.ends_with('/') {
            continue;
        }
        total += size as u64;
        if total > MAX_UNZIPPED {
            return Err(bad(format!("expands to over {MAX_UNZIPPED} bytes")));
        }
        let data_at =
            local + 30 + u16_at(local + 26).ok_or_else(truncated)? + u16_at(local + 28).ok_or_else(truncated)?;
        let data =
            bytes.get(data_at..data_at + packed).filter(|_| u32_at(local) == Some(LOCAL)).ok_or_else(truncated)?;
        let content = match method {
            0 => data.to_vec(),
            8 => {
                let mut out = Vec::with_capacity(size as usize);
                flate2::read::DeflateDecoder::new(data)
                    .take(size as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| bad(format!("{name}: {e}")))?;
                out
            }
            m => {
                return Err(bad(format!(
                    "{name} is compressed with method {m}; only stored and deflated files are read"
                )))
            }
        };
        if content.len() as u64 != size as u64 || crc32(&content) != crc {
            return Err(bad(format!("{name} is damaged (its size or CRC does not match)")));
        }
        files.push((name, content));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_of_the_standard_check_string() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn archives_round_trip_and_damage_is_an_error() {
        let files = vec![("config.json".to_string(), b"{}".to_vec()), ("model.safetensors".into(), vec![7; 1000])];
        let zip = write(&files).unwrap();
        assert_eq!(read(&zip, "a.zip").unwrap(), files);
        for cut in [0, 10, zip.len() / 2, zip.len() - 1] {
            assert!(read(&zip[..cut], "a.zip").is_err(), "cut at {cut}");
        }
        let mut flipped = zip.clone();
        flipped[30 + "config.json".len()] ^= 1; // the first byte of config.json
        assert!(read(&flipped, "a.zip").unwrap_err().to_string().contains("damaged"));
        assert!(read(b"not a zip at all, just some text", "a.zip").is_err());
    }

    #[test]
    fn deflated_entries_in_folders_are_read() {
        use std::io::Write;
        let content = b"hello hello hello hello".to_vec();
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&content).unwrap();
        let packed = enc.finish().unwrap();
        // A stored archive, then its one entry swapped for the deflated bytes (method 8).
        let name = "run/config.json".to_string();
        let mut zip = write(&[(name.clone(), packed.clone())]).unwrap();
        let fix = |zip: &mut Vec<u8>, at: usize| {
            zip[at + 8..at + 10].copy_from_slice(&8u16.to_le_bytes());
            zip[at + 14..at + 18].copy_from_slice(&crc32(&content).to_le_bytes());
            zip[at + 22..at + 26].copy_from_slice(&(content.len() as u32).to_le_bytes());
        };
        fix(&mut zip, 0);
        let central = 30 + name.len() + packed.len();
        // The central header's fields sit 2 bytes later (its "made by" field).
        let mut c = zip[central + 2..].to_vec();
        fix(&mut c, 0);
        zip.truncate(central + 2);
        zip.extend(c);
        assert_eq!(read(&zip, "a.zip").unwrap(), vec![("config.json".to_string(), content)]);
    }
}
