//! A page's content stream, interpreted as far as reading needs: where
//! each shown string lands and how large it is, and the straight lines and
//! thin bars that rule tables. Colour, clipping and images are ignored.

use std::collections::{BTreeMap, HashMap};

use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Document, Object, ObjectId};

use super::fonts::Font;

/// Form XObjects inside form XObjects, deeper than any real generator nests.
const MAX_FORM_DEPTH: usize = 8;
/// Form XObjects drawn per page: a form that draws itself twice at every
/// level would otherwise cost 2^depth.
const MAX_FORM_CALLS: usize = 10_000;
/// Rulings kept per page; tables are found in time proportional to their square.
const MAX_RULINGS: usize = 20_000;

/// A string as shown: its baseline's start and end in user space (points,
/// y up) and its font size there.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Run {
    pub x0: f32,
    pub x1: f32,
    pub y: f32,
    pub size: f32,
    pub text: String,
}

/// A horizontal or vertical stroke: `at` is its y (horizontal) or x
/// (vertical), and it spans `from..to` along the other axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Ruling {
    pub horizontal: bool,
    pub at: f32,
    pub from: f32,
    pub to: f32,
}

#[derive(Default)]
pub(super) struct Marks {
    pub runs: Vec<Run>,
    pub rulings: Vec<Ruling>,
}

/// Reads one page. Decompressed content, forms and font tables together
/// stay under `limit` bytes, or the page fails with lopdf's limit error.
pub(super) fn read_page(doc: &Document, page: ObjectId, limit: usize) -> lopdf::Result<Marks> {
    let content = doc.get_page_content_with_limit(page, limit)?;
    let mut reader = Reader {
        doc,
        left: limit.saturating_sub(content.len()),
        fonts: Vec::new(),
        font_ids: HashMap::new(),
        marks: Marks::default(),
        path: Path::default(),
        form_calls: 0,
    };
    let resources = Resources {
        fonts: doc.get_page_fonts(page)?,
        xobjects: page_xobjects(doc, page),
    };
    let ops = Content::decode(&content)?.operations;
    reader.run(&ops, &resources, &mut State::default(), 0)?;
    Ok(reader.marks)
}

fn page_xobjects(doc: &Document, page: ObjectId) -> Option<&Dictionary> {
    let (own, inherited) = doc.get_page_resources(page).ok()?;
    own.into_iter()
        .chain(
            inherited
                .iter()
                .filter_map(|id| doc.get_dictionary(*id).ok()),
        )
        .find_map(|r| r.get_deref(b"XObject", doc).ok()?.as_dict().ok())
}

struct Resources<'a> {
    fonts: BTreeMap<Vec<u8>, &'a Dictionary>,
    xobjects: Option<&'a Dictionary>,
}

/// A PDF matrix [a b c d e f]; points are row vectors, p' = p × M.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Matrix([f32; 6]);

impl Matrix {
    const IDENTITY: Matrix = Matrix([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);

    fn translate(x: f32, y: f32) -> Self {
        Matrix([1.0, 0.0, 0.0, 1.0, x, y])
    }

    /// self × other: first self, then other.
    fn then(self, other: Matrix) -> Matrix {
        let [a, b, c, d, e, f] = self.0;
        let [a2, b2, c2, d2, e2, f2] = other.0;
        Matrix([
            a * a2 + b * c2,
            a * b2 + b * d2,
            c * a2 + d * c2,
            c * b2 + d * d2,
            e * a2 + f * c2 + e2,
            e * b2 + f * d2 + f2,
        ])
    }

    fn apply(self, x: f32, y: f32) -> (f32, f32) {
        let [a, b, c, d, e, f] = self.0;
        (x * a + y * c + e, x * b + y * d + f)
    }

    /// How much a vertical unit grows: the font size's scale.
    fn vertical_scale(self) -> f32 {
        self.0[2].hypot(self.0[3])
    }
}

/// The graphics state that `q` saves, text state included.
#[derive(Clone)]
struct State {
    ctm: Matrix,
    font: Option<usize>,
    size: f32,
    char_spacing: f32,
    word_spacing: f32,
    horizontal_scale: f32,
    leading: f32,
    rise: f32,
}

impl Default for State {
    fn default() -> Self {
        Self {
            ctm: Matrix::IDENTITY,
            font: None,
            size: 0.0,
            char_spacing: 0.0,
            word_spacing: 0.0,
            horizontal_scale: 1.0,
            leading: 0.0,
            rise: 0.0,
        }
    }
}

/// The path under construction, in user space.
#[derive(Default)]
struct Path {
    segments: Vec<((f32, f32), (f32, f32))>,
    rects: Vec<[(f32, f32); 4]>,
    current: (f32, f32),
    start: (f32, f32),
}

struct Reader<'a> {
    doc: &'a Document,
    left: usize,
    fonts: Vec<Font<'a>>,
    font_ids: HashMap<*const Dictionary, usize>,
    marks: Marks,
    path: Path,
    form_calls: usize,
}

fn num(o: Option<&Object>) -> f32 {
    o.and_then(|o| o.as_float().ok())
        .filter(|v| v.is_finite())
        .unwrap_or(0.0)
}

fn nums<const N: usize>(operands: &[Object]) -> [f32; N] {
    std::array::from_fn(|i| num(operands.get(i)))
}

impl<'a> Reader<'a> {
    fn run(
        &mut self,
        ops: &[Operation],
        resources: &Resources<'a>,
        state: &mut State,
        depth: usize,
    ) -> lopdf::Result<()> {
        let mut saved: Vec<State> = Vec::new();
        let (mut tm, mut tlm) = (Matrix::IDENTITY, Matrix::IDENTITY);
        for op in ops {
            let o = op.operands.as_slice();
            match op.operator.as_str() {
                "q" => saved.push(state.clone()),
                "Q" => {
                    if let Some(s) = saved.pop() {
                        *state = s;
                    }
                }
                "cm" => state.ctm = Matrix(nums(o)).then(state.ctm),
                "BT" => (tm, tlm) = (Matrix::IDENTITY, Matrix::IDENTITY),
                "Tf" => {
                    let name = o.first().and_then(|n| n.as_name().ok());
                    state.font = match name.and_then(|n| resources.fonts.get(n)) {
                        Some(dict) => Some(self.font(dict)?),
                        None => None,
                    };
                    state.size = num(o.get(1));
                }
                "Tc" => state.char_spacing = num(o.first()),
                "Tw" => state.word_spacing = num(o.first()),
                "Tz" => state.horizontal_scale = num(o.first()) / 100.0,
                "TL" => state.leading = num(o.first()),
                "Ts" => state.rise = num(o.first()),
                "Td" | "TD" => {
                    let [x, y] = nums(o);
                    if op.operator == "TD" {
                        state.leading = -y;
                    }
                    tlm = Matrix::translate(x, y).then(tlm);
                    tm = tlm;
                }
                "Tm" => (tm, tlm) = (Matrix(nums(o)), Matrix(nums(o))),
                "T*" => {
                    tlm = Matrix::translate(0.0, -state.leading).then(tlm);
                    tm = tlm;
                }
                "Tj" | "'" | "\"" => {
                    if op.operator != "Tj" {
                        if op.operator == "\"" {
                            [state.word_spacing, state.char_spacing] = nums(o);
                        }
                        tlm = Matrix::translate(0.0, -state.leading).then(tlm);
                        tm = tlm;
                    }
                    if let Some(Object::String(bytes, _)) = o.last() {
                        self.show(bytes, state, &mut tm);
                    }
                }
                "TJ" => {
                    for item in o
                        .first()
                        .and_then(|a| a.as_array().ok())
                        .into_iter()
                        .flatten()
                    {
                        match item {
                            Object::String(bytes, _) => self.show(bytes, state, &mut tm),
                            other => {
                                let shift = -num(Some(other)) / 1000.0
                                    * state.size
                                    * state.horizontal_scale;
                                tm = Matrix::translate(shift, 0.0).then(tm);
                            }
                        }
                    }
                }
                "Do" => {
                    if let Some(name) = o.first().and_then(|n| n.as_name().ok()) {
                        self.form(name, resources, state, depth)?;
                    }
                }
                operator => self.path_op(operator, o, state.ctm),
            }
        }
        Ok(())
    }

    fn font(&mut self, dict: &'a Dictionary) -> lopdf::Result<usize> {
        let key: *const Dictionary = dict;
        if let Some(i) = self.font_ids.get(&key) {
            return Ok(*i);
        }
        let font = Font::read(self.doc, dict, self.left)?;
        self.fonts.push(font);
        self.font_ids.insert(key, self.fonts.len() - 1);
        Ok(self.fonts.len() - 1)
    }

    /// Shows `bytes` at the text matrix, which then moves past them.
    fn show(&mut self, bytes: &[u8], state: &State, tm: &mut Matrix) {
        let Some(font) = state.font.and_then(|i| self.fonts.get(i)) else {
            return;
        };
        let advance: f32 = font
            .codes(bytes)
            .map(|(width, space)| {
                let spacing = state.char_spacing + if space { state.word_spacing } else { 0.0 };
                (width / 1000.0 * state.size + spacing) * state.horizontal_scale
            })
            .sum();
        let placed = tm.then(state.ctm);
        let (x0, y) = placed.apply(0.0, state.rise);
        let (x1, _) = placed.apply(advance, state.rise);
        *tm = Matrix::translate(advance, 0.0).then(*tm);
        let size = state.size.abs() * placed.vertical_scale();
        match font.decode(bytes) {
            Some(text) if !text.trim().is_empty() && size.is_finite() && size > 0.0 => {
                self.marks.runs.push(Run {
                    x0: x0.min(x1),
                    x1: x0.max(x1),
                    y,
                    size,
                    text,
                })
            }
            _ => {}
        }
    }

    /// Runs a form XObject's content inside this one's state.
    fn form(
        &mut self,
        name: &[u8],
        resources: &Resources<'a>,
        state: &State,
        depth: usize,
    ) -> lopdf::Result<()> {
        let doc = self.doc;
        let stream = resources
            .xobjects
            .and_then(|x| x.get_deref(name, doc).ok())
            .and_then(|s| s.as_stream().ok());
        let Some(stream) = stream else {
            return Ok(());
        };
        self.form_calls += 1;
        if depth >= MAX_FORM_DEPTH
            || self.form_calls > MAX_FORM_CALLS
            || stream.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Form")
        {
            return Ok(());
        }
        let content = stream.get_plain_content_with_limit(self.left)?;
        self.left = self.left.saturating_sub(content.len());
        let matrix = match stream
            .dict
            .get_deref(b"Matrix", doc)
            .and_then(Object::as_array)
        {
            Ok(m) if m.len() == 6 => Matrix(nums(m)),
            _ => Matrix::IDENTITY,
        };
        let own = stream
            .dict
            .get_deref(b"Resources", doc)
            .and_then(Object::as_dict)
            .ok();
        let mut fonts = resources.fonts.clone();
        if let Some(dict) = own.and_then(|r| r.get_deref(b"Font", doc).ok()?.as_dict().ok()) {
            for (name, font) in dict.iter() {
                if let Ok(font) = doc.dereference(font).and_then(|(_, f)| f.as_dict()) {
                    fonts.insert(name.clone(), font);
                }
            }
        }
        let inner = Resources {
            fonts,
            xobjects: own
                .and_then(|r| r.get_deref(b"XObject", doc).ok()?.as_dict().ok())
                .or(resources.xobjects),
        };
        let mut inner_state = state.clone();
        inner_state.ctm = matrix.then(state.ctm);
        let ops = Content::decode(&content)?.operations;
        self.run(&ops, &inner, &mut inner_state, depth + 1)
    }

    fn path_op(&mut self, operator: &str, o: &[Object], ctm: Matrix) {
        let path = &mut self.path;
        match operator {
            "m" => {
                let [x, y] = nums(o);
                path.current = ctm.apply(x, y);
                path.start = path.current;
            }
            "l" => {
                let [x, y] = nums(o);
                let to = ctm.apply(x, y);
                path.segments.push((path.current, to));
                path.current = to;
            }
            "c" => {
                let [.., x, y] = nums::<6>(o);
                path.current = ctm.apply(x, y);
            }
            "v" | "y" => {
                let [.., x, y] = nums::<4>(o);
                path.current = ctm.apply(x, y);
            }
            "h" => {
                path.segments.push((path.current, path.start));
                path.current = path.start;
            }
            "re" => {
                let [x, y, w, h] = nums(o);
                path.rects.push([
                    ctm.apply(x, y),
                    ctm.apply(x + w, y),
                    ctm.apply(x + w, y + h),
                    ctm.apply(x, y + h),
                ]);
                path.current = ctm.apply(x, y);
                path.start = path.current;
            }
            "S" | "s" | "B" | "B*" | "b" | "b*" => {
                let path = std::mem::take(&mut self.path);
                let edges = path
                    .rects
                    .iter()
                    .flat_map(|r| (0..4).map(move |i| (r[i], r[(i + 1) % 4])));
                for (from, to) in path.segments.into_iter().chain(edges) {
                    self.rule(line(from, to));
                }
            }
            "f" | "F" | "f*" => {
                for rect in std::mem::take(&mut self.path).rects {
                    self.rule(bar(rect));
                }
            }
            "n" => self.path = Path::default(),
            _ => {}
        }
    }

    fn rule(&mut self, ruling: Option<Ruling>) {
        if let Some(r) = ruling.filter(|_| self.marks.rulings.len() < MAX_RULINGS) {
            self.marks.rulings.push(r);
        }
    }
}

/// A stroked segment that runs along an axis.
fn line((x0, y0): (f32, f32), (x1, y1): (f32, f32)) -> Option<Ruling> {
    let (dx, dy) = ((x1 - x0).abs(), (y1 - y0).abs());
    if dy <= 1.0 && dx >= 2.0 {
        Some(Ruling {
            horizontal: true,
            at: (y0 + y1) / 2.0,
            from: x0.min(x1),
            to: x0.max(x1),
        })
    } else if dx <= 1.0 && dy >= 2.0 {
        Some(Ruling {
            horizontal: false,
            at: (x0 + x1) / 2.0,
            from: y0.min(y1),
            to: y0.max(y1),
        })
    } else {
        None
    }
}

/// A filled rectangle thin enough to be a rule: many generators draw
/// table borders as bars instead of strokes.
fn bar(rect: [(f32, f32); 4]) -> Option<Ruling> {
    let xs = rect.map(|p| p.0);
    let ys = rect.map(|p| p.1);
    let (x0, x1) = (
        xs.iter().copied().fold(f32::MAX, f32::min),
        xs.iter().copied().fold(f32::MIN, f32::max),
    );
    let (y0, y1) = (
        ys.iter().copied().fold(f32::MAX, f32::min),
        ys.iter().copied().fold(f32::MIN, f32::max),
    );
    let (w, h) = (x1 - x0, y1 - y0);
    if h <= 3.0 && w > 2.0 * h {
        line((x0, (y0 + y1) / 2.0), (x1, (y0 + y1) / 2.0))
    } else if w <= 3.0 && h > 2.0 * w {
        line(((x0 + x1) / 2.0, y0), ((x0 + x1) / 2.0, y1))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page whose form draws itself `calls` times, then shows a word.
    fn self_drawing_form(calls: usize) -> (Document, ObjectId) {
        use lopdf::{dictionary, Stream};
        let mut doc = Document::with_version("1.5");
        let font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
        });
        let form_id = doc.new_object_id();
        let body = format!(
            "{}BT /F1 10 Tf 72 700 Td (loop) Tj ET",
            "/X Do ".repeat(calls)
        );
        let resources = dictionary! {
            "Font" => dictionary! { "F1" => font },
            "XObject" => dictionary! { "X" => form_id },
        };
        let mut form = Stream::new(
            dictionary! { "Type" => "XObject", "Subtype" => "Form", "Resources" => resources.clone() },
            body.into_bytes(),
        );
        form.dict
            .set("BBox", vec![0.into(), 0.into(), 612.into(), 792.into()]);
        doc.objects.insert(form_id, Object::Stream(form));
        let content = doc.add_object(Stream::new(dictionary! {}, b"/X Do".to_vec()));
        let pages = doc.new_object_id();
        let page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages, "Contents" => content, "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        });
        doc.objects.insert(
            pages,
            Object::Dictionary(
                dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1 },
            ),
        );
        (doc, page)
    }

    #[test]
    fn forms_are_read_and_a_self_drawing_form_stays_bounded() {
        let (doc, page) = self_drawing_form(1);
        let marks = read_page(&doc, page, 1 << 20).unwrap();
        // Drawn at depths 0 to 7: eight times, each a run.
        assert_eq!(marks.runs.len(), MAX_FORM_DEPTH);
        assert_eq!(marks.runs[0].text, "loop");
        // 50 calls per level would be 50^8 draws unbounded.
        let (doc, page) = self_drawing_form(50);
        let marks = read_page(&doc, page, 1 << 20).unwrap();
        assert!(marks.runs.len() <= MAX_FORM_CALLS, "{}", marks.runs.len());
    }

    #[test]
    fn matrices_compose_as_pdf_does() {
        // Scale by 2, then move right by 10: (1, 1) lands on (12, 2).
        let m = Matrix([2.0, 0.0, 0.0, 2.0, 0.0, 0.0]).then(Matrix::translate(10.0, 0.0));
        assert_eq!(m.apply(1.0, 1.0), (12.0, 2.0));
        assert_eq!(m.vertical_scale(), 2.0);
    }

    #[test]
    fn only_axis_aligned_strokes_and_thin_bars_rule() {
        let h = line((10.0, 100.0), (200.0, 100.4)).unwrap();
        assert!(h.horizontal && h.from == 10.0 && h.to == 200.0);
        assert!(line((10.0, 10.0), (50.0, 60.0)).is_none());
        let v = bar([(50.0, 10.0), (50.5, 10.0), (50.5, 90.0), (50.0, 90.0)]).unwrap();
        assert!(!v.horizontal && v.at == 50.25);
        // A filled cell background is not a rule.
        assert!(bar([(0.0, 0.0), (80.0, 0.0), (80.0, 20.0), (0.0, 20.0)]).is_none());
    }
}
