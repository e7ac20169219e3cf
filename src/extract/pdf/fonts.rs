//! What the layout needs from a PDF font: its text, through lopdf's
//! encodings and ToUnicode maps, and how far each code advances, from the
//! font's widths or, for the standard fonts that carry none, their metrics.

use lopdf::{Dictionary, Document, Encoding, Object};

/// One font of a page, ready to measure and decode shown strings.
pub(super) struct Font<'a> {
    encoding: Option<Encoding<'a>>,
    widths: Widths,
    /// Composite (Type0) fonts show two-byte codes.
    two_byte: bool,
}

enum Widths {
    /// `/Widths` from `/FirstChar`, in thousandths of the font size.
    Simple {
        first: u32,
        widths: Vec<f32>,
        missing: f32,
    },
    /// A CID font's `/W` ranges, sorted by their first CID.
    Cid {
        ranges: Vec<(u32, u32, f32)>,
        default: f32,
    },
    /// A standard font without widths: Adobe's metrics for printable ASCII.
    Standard(&'static [u16; 95], f32),
}

impl<'a> Font<'a> {
    /// Reads `dict`; a decoding table larger than `limit` bytes fails,
    /// other damage falls back as lopdf does.
    pub fn read(doc: &'a Document, dict: &'a Dictionary, limit: usize) -> lopdf::Result<Self> {
        let encoding = match dict.get_font_encoding_with_limit(doc, limit) {
            Ok(e) => Some(e),
            Err(e @ lopdf::Error::Decompress(_)) => return Err(e),
            Err(_) => None,
        };
        let subtype = dict.get(b"Subtype").and_then(Object::as_name).ok();
        let two_byte = subtype == Some(b"Type0".as_slice());
        let widths = if two_byte {
            cid_widths(doc, dict)
        } else {
            simple_widths(doc, dict, subtype == Some(b"Type3".as_slice()))
        };
        Ok(Self {
            encoding,
            widths,
            two_byte,
        })
    }

    /// The text of a shown string, or None when the font cannot decode it.
    pub fn decode(&self, bytes: &[u8]) -> Option<String> {
        self.encoding.as_ref()?.bytes_to_string(bytes).ok()
    }

    /// Each code of `bytes` with its advance in thousandths of the font
    /// size, and whether it is the single-byte space that word spacing
    /// widens.
    pub fn codes<'b>(&'b self, bytes: &'b [u8]) -> impl Iterator<Item = (f32, bool)> + 'b {
        let step = if self.two_byte { 2 } else { 1 };
        bytes.chunks(step).map(move |c| {
            let code = c.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b));
            (self.width(code), !self.two_byte && code == 32)
        })
    }

    fn width(&self, code: u32) -> f32 {
        match &self.widths {
            Widths::Simple {
                first,
                widths,
                missing,
            } => code
                .checked_sub(*first)
                .and_then(|i| widths.get(i as usize))
                .copied()
                .unwrap_or(*missing),
            Widths::Cid { ranges, default } => {
                let at = ranges.partition_point(|(start, _, _)| *start <= code);
                match at.checked_sub(1).map(|i| ranges[i]) {
                    Some((_, end, w)) if code <= end => w,
                    _ => *default,
                }
            }
            Widths::Standard(table, other) => code
                .checked_sub(32)
                .and_then(|i| table.get(i as usize))
                .map_or(*other, |w| f32::from(*w)),
        }
    }
}

fn number(doc: &Document, o: &Object) -> Option<f32> {
    doc.dereference(o).ok()?.1.as_float().ok()
}

fn array<'a>(doc: &'a Document, dict: &'a Dictionary, key: &[u8]) -> Option<&'a Vec<Object>> {
    dict.get_deref(key, doc).ok()?.as_array().ok()
}

fn simple_widths(doc: &Document, dict: &Dictionary, type3: bool) -> Widths {
    let first = dict
        .get(b"FirstChar")
        .ok()
        .and_then(|o| number(doc, o))
        .unwrap_or(0.0)
        .max(0.0) as u32;
    // Type 3 widths are in glyph space; the font matrix scales them to text space.
    let scale = if type3 {
        array(doc, dict, b"FontMatrix")
            .and_then(|m| m.first())
            .and_then(|a| number(doc, a))
            .map_or(1.0, |a| a * 1000.0)
    } else {
        1.0
    };
    let missing = dict
        .get_deref(b"FontDescriptor", doc)
        .and_then(Object::as_dict)
        .ok()
        .and_then(|d| d.get(b"MissingWidth").ok())
        .and_then(|o| number(doc, o));
    match array(doc, dict, b"Widths") {
        Some(widths) if !widths.is_empty() => Widths::Simple {
            first,
            widths: widths
                .iter()
                .map(|w| number(doc, w).unwrap_or(0.0) * scale)
                .collect(),
            missing: missing.unwrap_or(0.0),
        },
        _ => standard(
            dict.get(b"BaseFont")
                .and_then(Object::as_name)
                .unwrap_or(b""),
        ),
    }
}

fn cid_widths(doc: &Document, dict: &Dictionary) -> Widths {
    let descendant = array(doc, dict, b"DescendantFonts")
        .and_then(|a| a.first())
        .and_then(|d| doc.dereference(d).ok())
        .and_then(|(_, d)| d.as_dict().ok());
    let Some(cid) = descendant else {
        return Widths::Cid {
            ranges: Vec::new(),
            default: 1000.0,
        };
    };
    let default = cid
        .get(b"DW")
        .ok()
        .and_then(|o| number(doc, o))
        .unwrap_or(1000.0);
    // /W holds `c [w1 w2 ...]` (consecutive CIDs from c) and `c_first c_last w`.
    let mut ranges = Vec::new();
    let items = array(doc, cid, b"W").map_or(&[][..], Vec::as_slice);
    let mut i = 0;
    while i + 1 < items.len() {
        let start = number(doc, &items[i]).unwrap_or(0.0).max(0.0) as u32;
        match doc.dereference(&items[i + 1]).map(|(_, o)| o) {
            Ok(Object::Array(ws)) => {
                for (k, w) in ws.iter().enumerate() {
                    let c = start.saturating_add(k as u32);
                    ranges.push((c, c, number(doc, w).unwrap_or(default)));
                }
                i += 2;
            }
            _ => {
                let end = number(doc, &items[i + 1]).unwrap_or(0.0).max(0.0) as u32;
                let w = items.get(i + 2).and_then(|w| number(doc, w));
                ranges.push((start, end, w.unwrap_or(default)));
                i += 3;
            }
        }
    }
    ranges.sort_by_key(|r| r.0);
    Widths::Cid { ranges, default }
}

/// The 14 standard fonts may come without widths; their metrics are
/// Adobe's. Fonts outside the set that also lack widths get Helvetica's,
/// the usual substitute.
fn standard(base_font: &[u8]) -> Widths {
    let name = String::from_utf8_lossy(base_font).to_ascii_lowercase();
    if name.contains("courier") || name.contains("mono") {
        Widths::Simple {
            first: 0,
            widths: Vec::new(),
            missing: 600.0,
        }
    } else if name.contains("times") || name.contains("serif") && !name.contains("sans") {
        Widths::Standard(&TIMES, 500.0)
    } else {
        Widths::Standard(&HELVETICA, 556.0)
    }
}

/// Helvetica's advance widths for codes 32 to 126 (Adobe's AFM).
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

/// Times-Roman's advance widths for codes 32 to 126 (Adobe's AFM).
const TIMES: [u16; 95] = [
    250, 333, 408, 500, 500, 833, 778, 180, 333, 333, 500, 564, 250, 333, 250, 278, 500, 500, 500,
    500, 500, 500, 500, 500, 500, 500, 278, 278, 564, 564, 564, 444, 921, 722, 667, 667, 722, 611,
    556, 722, 722, 333, 389, 722, 611, 889, 722, 722, 556, 722, 667, 556, 611, 722, 722, 944, 722,
    722, 611, 333, 278, 333, 469, 500, 333, 444, 500, 444, 500, 444, 333, 500, 500, 278, 278, 500,
    278, 778, 500, 500, 500, 500, 333, 389, 278, 500, 500, 722, 500, 500, 444, 480, 200, 480, 541,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_ranges_and_standard_metrics() {
        let cid = Widths::Cid {
            ranges: vec![(3, 3, 250.0), (10, 20, 600.0)],
            default: 1000.0,
        };
        let font = Font {
            encoding: None,
            widths: cid,
            two_byte: true,
        };
        let widths: Vec<f32> = font
            .codes(&[0, 3, 0, 15, 0, 21, 0])
            .map(|(w, _)| w)
            .collect();
        // The odd byte at the end is a code of its own, not dropped.
        assert_eq!(widths, vec![250.0, 600.0, 1000.0, 1000.0]);
        let helvetica = Font {
            encoding: None,
            widths: standard(b"Helvetica-Bold"),
            two_byte: false,
        };
        let spaces: Vec<(f32, bool)> = helvetica.codes(b" W\xe9").collect();
        assert_eq!(spaces, vec![(278.0, true), (944.0, false), (556.0, false)]);
        assert!(matches!(standard(b"Times-Italic"), Widths::Standard(t, _) if t[0] == 250));
    }
}
