//! A scanned page's image, in a form Tesseract reads.

use lopdf::xobject::PdfImage;
use lopdf::{Document, Object, ObjectId};

use crate::extract::Limits;

/// The page's largest image, as bytes Tesseract reads: JPEG and JPEG 2000
/// as stored, CCITT fax data wrapped in a TIFF, raw 8-bit gray or RGB and
/// 1-bit pixels as PNM. JBIG2 is not read: Tesseract's image library has
/// no decoder for it.
pub(super) fn page_image(doc: &Document, page: ObjectId, limits: &Limits) -> Option<Vec<u8>> {
    let images = doc.get_page_images(page).ok()?;
    let image = images
        .iter()
        .max_by_key(|i| i.width.saturating_mul(i.height))?;
    let (width, height) = (
        usize::try_from(image.width).ok()?,
        usize::try_from(image.height).ok()?,
    );
    let filters = image.filters.clone().unwrap_or_default();
    if matches!(
        filters.last().map(String::as_str),
        Some("DCTDecode" | "JPXDecode")
    ) {
        return (filters.len() == 1).then(|| image.content.to_vec());
    }
    if filters.last().map(String::as_str) == Some("CCITTFaxDecode") {
        return (filters.len() == 1).then(|| fax_tiff(doc, image, width, height))?;
    }
    let (magic, row_bytes) = match (image.color_space.as_deref(), image.bits_per_component) {
        (Some("DeviceGray") | None, Some(1)) => ("P4", width.div_ceil(8)),
        (Some("DeviceGray"), Some(8)) => ("P5", width),
        (Some("DeviceRGB"), Some(8)) => ("P6", width.checked_mul(3)?),
        _ => return None,
    };
    let expected = row_bytes.checked_mul(height)?;
    if expected == 0 || expected as u64 > limits.max_decompressed_bytes {
        return None;
    }
    let stream = doc.get_object(image.id).ok()?.as_stream().ok()?;
    let mut pixels = stream.get_plain_content_with_limit(expected).ok()?;
    if pixels.len() < expected {
        return None;
    }
    pixels.truncate(expected);
    if magic == "P4" {
        // PDF gray: 0 is black; PBM: 1 is black.
        pixels.iter_mut().for_each(|b| *b = !*b);
    }
    let max = if magic == "P4" { "" } else { " 255" };
    let mut out = format!("{magic}\n{width} {height}{max}\n").into_bytes();
    out.extend_from_slice(&pixels);
    Some(out)
}

/// CCITT Group 3 or 4 data as the one strip of a bilevel TIFF, which
/// Tesseract decodes; PDF's `/DecodeParms` become the TIFF's tags.
fn fax_tiff(doc: &Document, image: &PdfImage, width: usize, height: usize) -> Option<Vec<u8>> {
    let parms = match image.origin_dict.get_deref(b"DecodeParms", doc) {
        Ok(Object::Array(a)) => a
            .first()
            .and_then(|p| doc.dereference(p).ok()?.1.as_dict().ok()),
        Ok(Object::Dictionary(d)) => Some(d),
        _ => None,
    };
    let int = |key: &[u8]| parms.and_then(|p| p.get(key).ok()?.as_i64().ok());
    let k = int(b"K").unwrap_or(0);
    let columns = u32::try_from(int(b"Columns").unwrap_or(width as i64)).ok()?;
    let rows = match int(b"Rows") {
        Some(r) if r > 0 => u32::try_from(r).ok()?,
        _ => u32::try_from(height).ok()?,
    };
    let data = image.content;
    let length = u32::try_from(data.len()).ok()?;
    // K < 0: Group 4; K = 0: Group 3 one-dimensional; K > 0: Group 3 two-dimensional.
    let (compression, t4_options) = match k {
        k if k < 0 => (4u16, None),
        0 => (3, Some(0u32)),
        _ => (3, Some(1)),
    };
    let mut tags: Vec<(u16, u16, u32)> = vec![
        (256, 4, columns),
        (257, 4, rows),
        (258, 3, 1),
        (259, 3, u32::from(compression)),
        (262, 3, 0), // white is zero: the fax convention
        (273, 4, 0), // the strip's offset, set below
        (277, 3, 1),
        (278, 4, rows),
        (279, 4, length),
    ];
    if let Some(options) = t4_options {
        tags.push((292, 4, options));
    }
    let strip_at = 8 + 2 + 12 * tags.len() as u32 + 4;
    let mut out = Vec::with_capacity(strip_at as usize + data.len());
    out.extend_from_slice(b"II*\0");
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&(tags.len() as u16).to_le_bytes());
    for (tag, kind, value) in tags {
        let value = if tag == 273 { strip_at } else { value };
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        // A SHORT sits in the first two bytes of the value field.
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(data);
    Some(out)
}
