//! `contentType`: a response the backend sent without a `Content-Type` gets one guessed from
//! its first bytes, by the WHATWG MIME Sniffing standard's table as Go's
//! `http.DetectContentType` reads it (what Traefik's middleware turns on), so a Traefik user
//! sees the same type. Pure: bytes in, a type out.

/// How many of the first bytes are looked at.
const SNIFF_LEN: usize = 512;

/// One row of the table: what the data must look like, and the type it then is.
enum Signature {
    /// An HTML tag at the first non-whitespace byte, letters in either case, followed by a
    /// space or `>`.
    Html(&'static [u8]),
    /// `pattern` under `mask`, at the start or (`skip_ws`) at the first non-whitespace byte.
    Masked {
        mask: &'static [u8],
        pattern: &'static [u8],
        skip_ws: bool,
        ct: &'static str,
    },
    /// `prefix` at the very start.
    Exact(&'static [u8], &'static str),
    /// An ISO base media file whose `ftyp` box names an `mp4` brand.
    Mp4,
}

const HTML: &str = "text/html; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const BINARY: &str = "application/octet-stream";

/// In the standard's order: the first row that matches wins.
const TABLE: &[Signature] = &[
    Signature::Html(b"<!DOCTYPE HTML"),
    Signature::Html(b"<HTML"),
    Signature::Html(b"<HEAD"),
    Signature::Html(b"<SCRIPT"),
    Signature::Html(b"<IFRAME"),
    Signature::Html(b"<H1"),
    Signature::Html(b"<DIV"),
    Signature::Html(b"<FONT"),
    Signature::Html(b"<TABLE"),
    Signature::Html(b"<A"),
    Signature::Html(b"<STYLE"),
    Signature::Html(b"<TITLE"),
    Signature::Html(b"<B"),
    Signature::Html(b"<BODY"),
    Signature::Html(b"<BR"),
    Signature::Html(b"<P"),
    Signature::Html(b"<!--"),
    Signature::Masked {
        mask: b"\xFF\xFF\xFF\xFF\xFF",
        pattern: b"<?xml",
        skip_ws: true,
        ct: "text/xml; charset=utf-8",
    },
    Signature::Exact(b"%PDF-", "application/pdf"),
    Signature::Exact(b"%!PS-Adobe-", "application/postscript"),
    // Byte order marks.
    Signature::Masked {
        mask: b"\xFF\xFF\x00\x00",
        pattern: b"\xFE\xFF\x00\x00",
        skip_ws: false,
        ct: "text/plain; charset=utf-16be",
    },
    Signature::Masked {
        mask: b"\xFF\xFF\x00\x00",
        pattern: b"\xFF\xFE\x00\x00",
        skip_ws: false,
        ct: "text/plain; charset=utf-16le",
    },
    Signature::Masked {
        mask: b"\xFF\xFF\xFF\x00",
        pattern: b"\xEF\xBB\xBF\x00",
        skip_ws: false,
        ct: TEXT,
    },
    // Images.
    Signature::Exact(b"\x00\x00\x01\x00", "image/x-icon"),
    Signature::Exact(b"\x00\x00\x02\x00", "image/x-icon"),
    Signature::Exact(b"BM", "image/bmp"),
    Signature::Exact(b"GIF87a", "image/gif"),
    Signature::Exact(b"GIF89a", "image/gif"),
    Signature::Masked {
        mask: b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF\xFF\xFF",
        pattern: b"RIFF\x00\x00\x00\x00WEBPVP",
        skip_ws: false,
        ct: "image/webp",
    },
    Signature::Exact(b"\x89PNG\r\n\x1A\n", "image/png"),
    Signature::Exact(b"\xFF\xD8\xFF", "image/jpeg"),
    // Audio and video, in the standard's order.
    Signature::Masked {
        mask: b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF",
        pattern: b"FORM\x00\x00\x00\x00AIFF",
        skip_ws: false,
        ct: "audio/aiff",
    },
    Signature::Exact(b"ID3", "audio/mpeg"),
    Signature::Exact(b"OggS\x00", "application/ogg"),
    Signature::Exact(b"MThd\x00\x00\x00\x06", "audio/midi"),
    Signature::Masked {
        mask: b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF",
        pattern: b"RIFF\x00\x00\x00\x00AVI ",
        skip_ws: false,
        ct: "video/avi",
    },
    Signature::Masked {
        mask: b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF",
        pattern: b"RIFF\x00\x00\x00\x00WAVE",
        skip_ws: false,
        ct: "audio/wave",
    },
    Signature::Mp4,
    Signature::Exact(b"\x1A\x45\xDF\xA3", "video/webm"),
    // Fonts: an embedded OpenType font is 34 bytes of anything, then "LP".
    Signature::Masked {
        mask: &[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0xFF, 0xFF,
        ],
        pattern: &[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, b'L', b'P',
        ],
        skip_ws: false,
        ct: "application/vnd.ms-fontobject",
    },
    Signature::Exact(b"\x00\x01\x00\x00", "font/ttf"),
    Signature::Exact(b"OTTO", "font/otf"),
    Signature::Exact(b"ttcf", "font/collection"),
    Signature::Exact(b"wOFF", "font/woff"),
    Signature::Exact(b"wOF2", "font/woff2"),
    // Archives (RAR by RAR Labs' own signatures, for both versions).
    Signature::Exact(b"\x1F\x8B\x08", "application/x-gzip"),
    Signature::Exact(b"PK\x03\x04", "application/zip"),
    Signature::Exact(b"Rar!\x1A\x07\x00", "application/x-rar-compressed"),
    Signature::Exact(b"Rar!\x1A\x07\x01\x00", "application/x-rar-compressed"),
    Signature::Exact(b"\x00asm", "application/wasm"),
];

/// The type of a body starting with `data`: the table's first match, else plain text when no
/// byte is binary, else `application/octet-stream`.
pub fn sniff(data: &[u8]) -> &'static str {
    let data = &data[..data.len().min(SNIFF_LEN)];
    let first = data
        .iter()
        .position(|b| !is_whitespace(*b))
        .unwrap_or(data.len());
    TABLE
        .iter()
        .find_map(|s| s.matches(data, first))
        .unwrap_or_else(|| {
            if data[first..].iter().any(|b| is_binary(*b)) {
                BINARY
            } else {
                TEXT
            }
        })
}

impl Signature {
    fn matches(&self, data: &[u8], first: usize) -> Option<&'static str> {
        match self {
            Signature::Html(tag) => {
                let rest = &data[first..];
                let (head, next) = (rest.get(..tag.len())?, rest.get(tag.len())?);
                let same = head.iter().zip(tag.iter()).all(|(d, t)| {
                    if t.is_ascii_uppercase() {
                        d & 0xDF == *t
                    } else {
                        d == t
                    }
                });
                (same && matches!(next, b' ' | b'>')).then_some(HTML)
            }
            Signature::Masked {
                mask,
                pattern,
                skip_ws,
                ct,
            } => {
                let data = if *skip_ws { &data[first..] } else { data };
                let head = data.get(..pattern.len())?;
                let same = head
                    .iter()
                    .zip(mask.iter().zip(pattern.iter()))
                    .all(|(d, (m, p))| d & m == *p);
                same.then_some(*ct)
            }
            Signature::Exact(prefix, ct) => data.starts_with(prefix).then_some(*ct),
            Signature::Mp4 => mp4(data).then_some("video/mp4"),
        }
    }
}

/// An `ftyp` box, whole within `data`, naming an `mp4` brand (the major brand, or a
/// compatible one after the version).
fn mp4(data: &[u8]) -> bool {
    let Some(size) = data.get(..4) else {
        return false;
    };
    let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
    if data.len() < 12 || data.len() < size || !size.is_multiple_of(4) || &data[4..8] != b"ftyp" {
        return false;
    }
    (8..size)
        .step_by(4)
        .filter(|at| *at != 12)
        .any(|at| data.get(at..at + 3) == Some(b"mp4"))
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// A byte text does not hold (the standard's "binary data byte").
fn is_binary(b: u8) -> bool {
    matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F)
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn sniffs_as_go_does() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "text/plain; charset=utf-8"),
            (b"Hello, world\n", "text/plain; charset=utf-8"),
            (b"\n\t <!doctype html><p>x", "text/html; charset=utf-8"),
            (b"<HtMl><b>", "text/html; charset=utf-8"),
            (b"<html", "text/plain; charset=utf-8"),
            (b"<a href=x>", "text/html; charset=utf-8"),
            (b"<abbr>", "text/plain; charset=utf-8"),
            (b"  <?xml version=\"1.0\"?>", "text/xml; charset=utf-8"),
            (b"%PDF-1.7", "application/pdf"),
            (b"\xFE\xFF\x00\x41", "text/plain; charset=utf-16be"),
            (b"\xEF\xBB\xBFabc", "text/plain; charset=utf-8"),
            (b"GIF89a....", "image/gif"),
            (b"\x89PNG\r\n\x1A\n....", "image/png"),
            (b"\xFF\xD8\xFF\xE0", "image/jpeg"),
            (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
            (b"RIFF\x10\x00\x00\x00WAVEfmt ", "audio/wave"),
            (b"ID3\x04", "audio/mpeg"),
            (
                b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",
                "video/mp4",
            ),
            (b"wOF2\x00\x01", "font/woff2"),
            (b"\x1F\x8B\x08\x00", "application/x-gzip"),
            (b"PK\x03\x04", "application/zip"),
            (b"\x00asm\x01\x00", "application/wasm"),
            (b"\x01\x02\x03", "application/octet-stream"),
            (b"{\"a\": 1}", "text/plain; charset=utf-8"),
        ];
        for (data, want) in cases {
            assert_eq!(sniff(data), *want, "{:?}", String::from_utf8_lossy(data));
        }
        let mut long = vec![b'a'; 600];
        long[550] = 0;
        assert_eq!(
            sniff(&long),
            "text/plain; charset=utf-8",
            "only 512 bytes are read"
        );
    }
}
