//! Reading order for a page's positioned text. Runs on one baseline join
//! into line pieces, split where a gap is wide enough to be a gutter. Rows
//! that keep a common gutter form a band, and a band whose sides hold
//! running text is read as columns: left side whole, then right (each
//! side may split again). A band of short pieces, as in a table without
//! rules or a form, is read row by row.

use super::content::Run;

/// A gap this many font sizes wide separates columns, not words.
const GUTTER: f32 = 1.2;
/// A gap wider than this many font sizes between runs is a word space.
const SPACE: f32 = 0.15;
/// Column sides whose pieces are narrower than this many font sizes, at
/// the median, are cells or labels, so their band is read by rows.
const COLUMN_TEXT: f32 = 6.0;
/// Columns within columns, at most.
const MAX_SPLITS: usize = 8;

/// A piece of the page: part of one line of text, or a whole table.
#[derive(Clone, Debug)]
pub(super) struct Block {
    pub x0: f32,
    pub x1: f32,
    pub top: f32,
    pub bottom: f32,
    pub size: f32,
    pub text: String,
    pub table: bool,
}

impl Block {
    fn height(&self) -> f32 {
        self.top - self.bottom
    }
}

/// The page's text in reading order: lines, a blank line between
/// paragraphs and around tables.
pub(super) fn page_text(runs: Vec<Run>, tables: Vec<Block>) -> String {
    let mut blocks = line_pieces(runs);
    blocks.extend(tables);
    let all: Vec<usize> = (0..blocks.len()).collect();
    let mut lines = Vec::new();
    read(&blocks, all, 0, &mut lines);
    write(&blocks, &lines)
}

/// Joins runs that share a baseline into pieces, split at gutters.
pub(super) fn line_pieces(mut runs: Vec<Run>) -> Vec<Block> {
    runs.sort_by(|a, b| b.y.total_cmp(&a.y).then(a.x0.total_cmp(&b.x0)));
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < runs.len() {
        let base = &runs[start];
        let end = start
            + runs[start..]
                .iter()
                .position(|r| (base.y - r.y) > 0.4 * base.size.min(r.size))
                .unwrap_or(runs.len() - start);
        let line = &mut runs[start..end];
        line.sort_by(|a, b| a.x0.total_cmp(&b.x0));
        let mut piece: Option<Block> = None;
        let mut last: Option<&Run> = None;
        for run in line.iter() {
            // Some generators draw a string twice, a hair apart, for bold.
            if last.is_some_and(|l| l.text == run.text && (l.x0 - run.x0).abs() < 0.2 * run.size) {
                continue;
            }
            last = Some(run);
            match piece.as_mut() {
                Some(p) if run.x0 - p.x1 < GUTTER * p.size.max(run.size) => {
                    let gap = run.x0 - p.x1;
                    if gap > SPACE * run.size
                        && !p.text.ends_with(char::is_whitespace)
                        && !run.text.starts_with(char::is_whitespace)
                    {
                        p.text.push(' ');
                    }
                    p.text.push_str(&run.text);
                    p.x1 = p.x1.max(run.x1);
                    p.top = p.top.max(run.y + 0.75 * run.size);
                    p.bottom = p.bottom.min(run.y - 0.25 * run.size);
                    p.size = p.size.max(run.size);
                }
                _ => {
                    pieces.extend(piece.take());
                    piece = Some(Block {
                        x0: run.x0,
                        x1: run.x1,
                        top: run.y + 0.75 * run.size,
                        bottom: run.y - 0.25 * run.size,
                        size: run.size,
                        text: run.text.clone(),
                        table: false,
                    });
                }
            }
        }
        pieces.extend(piece);
        start = end;
    }
    pieces
}

/// Groups blocks that overlap vertically into rows, top to bottom, each
/// sorted left to right.
fn rows(blocks: &[Block], mut ids: Vec<usize>) -> Vec<Vec<usize>> {
    ids.sort_by(|a, b| blocks[*b].top.total_cmp(&blocks[*a].top));
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let (mut bottom, mut thinnest) = (f32::MAX, f32::MAX);
    for id in ids {
        let b = &blocks[id];
        // Sorted by top, so the row's top is at least this block's.
        let overlap = b.top - b.bottom.max(bottom);
        match rows.last_mut() {
            Some(row) if overlap > 0.5 * b.height().min(thinnest) => {
                row.push(id);
                bottom = bottom.min(b.bottom);
                thinnest = thinnest.min(b.height());
            }
            _ => {
                rows.push(vec![id]);
                (bottom, thinnest) = (b.bottom, b.height());
            }
        }
    }
    for row in &mut rows {
        row.sort_by(|a, b| blocks[*a].x0.total_cmp(&blocks[*b].x0));
    }
    rows
}

/// The gaps inside a row wide enough to be gutters.
fn gutters(blocks: &[Block], row: &[usize]) -> Vec<(f32, f32)> {
    let mut gaps = Vec::new();
    let mut right = f32::MIN;
    for pair in row.windows(2) {
        let (a, b) = (&blocks[pair[0]], &blocks[pair[1]]);
        right = right.max(a.x1);
        if b.x0 - right >= GUTTER * a.size.max(b.size) {
            gaps.push((right, b.x0));
        }
    }
    gaps
}

/// What is left of `free` once the row's blocks cover their spans.
fn still_free(free: &[(f32, f32)], blocks: &[Block], row: &[usize], min: f32) -> Vec<(f32, f32)> {
    let mut left = free.to_vec();
    for b in row.iter().map(|i| &blocks[*i]) {
        left = left
            .into_iter()
            .flat_map(|(x0, x1)| {
                if b.x1 <= x0 || b.x0 >= x1 {
                    vec![(x0, x1)]
                } else {
                    vec![(x0, b.x0), (b.x1, x1)]
                }
            })
            .filter(|(x0, x1)| x1 - x0 >= min)
            .collect();
    }
    left
}

struct Band {
    rows: Vec<Vec<usize>>,
    /// Gutters every row leaves open; None for a band without any.
    free: Option<Vec<(f32, f32)>>,
}

/// Appends `ids` to `lines` in reading order; each line is the blocks
/// written on one output line.
fn read(blocks: &[Block], ids: Vec<usize>, depth: usize, lines: &mut Vec<Vec<usize>>) {
    for band in bands(blocks, rows(blocks, ids)) {
        let Some(free) = band.free else {
            lines.extend(band.rows);
            continue;
        };
        let widest = free
            .iter()
            .copied()
            .max_by(|a, b| (a.1 - a.0).total_cmp(&(b.1 - b.0)));
        let (left, right): (Vec<usize>, Vec<usize>) = match widest {
            Some((x0, x1)) => band
                .rows
                .iter()
                .flatten()
                .partition(|i| blocks[**i].x1 <= (x0 + x1) / 2.0),
            None => (Vec::new(), Vec::new()),
        };
        if depth < MAX_SPLITS
            && !left.is_empty()
            && !right.is_empty()
            && running_text(blocks, &left)
            && running_text(blocks, &right)
        {
            read(blocks, left, depth + 1, lines);
            read(blocks, right, depth + 1, lines);
        } else {
            lines.extend(band.rows);
        }
    }
}

fn bands(blocks: &[Block], rows: Vec<Vec<usize>>) -> Vec<Band> {
    let mut bands: Vec<Band> = Vec::new();
    for row in rows {
        let size = row.iter().map(|i| blocks[*i].size).fold(0.0, f32::max);
        let gaps = gutters(blocks, &row);
        if let Some(band) = bands.last_mut() {
            match &band.free {
                Some(free) => {
                    let left = still_free(free, blocks, &row, GUTTER * size);
                    if !left.is_empty() {
                        band.free = Some(left);
                        band.rows.push(row);
                        continue;
                    }
                }
                None if gaps.is_empty() => {
                    band.rows.push(row);
                    continue;
                }
                None => {}
            }
        }
        let free = (!gaps.is_empty()).then_some(gaps);
        bands.push(Band {
            rows: vec![row],
            free,
        });
    }
    bands
}

/// Whether a side of a band reads as a column of running text.
fn running_text(blocks: &[Block], ids: &[usize]) -> bool {
    let mut widths: Vec<f32> = ids
        .iter()
        .map(|i| &blocks[*i])
        .filter(|b| !b.table)
        .map(|b| (b.x1 - b.x0) / b.size)
        .collect();
    if widths.is_empty() {
        return true;
    }
    widths.sort_by(f32::total_cmp);
    widths[widths.len() / 2] >= COLUMN_TEXT
}

fn write(blocks: &[Block], lines: &[Vec<usize>]) -> String {
    let mut out = String::new();
    let mut previous: Option<&Block> = None;
    for line in lines {
        let Some(first) = line.first().map(|i| &blocks[*i]) else {
            continue;
        };
        if let Some(p) = previous {
            let gap = p.bottom - first.top;
            let new_paragraph = p.table
                || first.table
                || gap > 0.6 * first.size
                || first.top > p.top + 0.5 * first.size;
            out.push_str(if new_paragraph { "\n\n" } else { "\n" });
        }
        for (k, b) in line.iter().map(|i| &blocks[*i]).enumerate() {
            if k > 0 {
                out.push(' ');
            }
            out.push_str(&b.text);
        }
        previous = Some(first);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(x0: f32, y: f32, text: &str) -> Run {
        // Helvetica-ish: half a font size per character at 10 pt.
        Run {
            x0,
            x1: x0 + 5.0 * text.chars().count() as f32,
            y,
            size: 10.0,
            text: text.to_string(),
        }
    }

    /// `lines` lines in each of two columns, on shared baselines from y 720.
    fn two_columns(lines: usize) -> Vec<Run> {
        let mut runs = Vec::new();
        for i in 0..lines {
            let y = 720.0 - 12.0 * i as f32;
            for (x, side) in [(50.0, "left"), (300.0, "right")] {
                runs.push(run(x, y, &format!("{side} column line number {i} of text")));
            }
        }
        runs
    }

    #[test]
    fn words_on_one_baseline_join_with_spaces() {
        let runs = vec![
            run(80.0, 700.0, "world"),
            run(50.0, 700.2, "hello"),
            // kerned: no gap, no space
            run(105.0, 699.9, "s"),
            run(50.0, 686.0, "next line"),
        ];
        assert_eq!(page_text(runs, Vec::new()), "hello worlds\nnext line");
    }

    #[test]
    fn two_columns_read_left_then_right_under_a_full_width_title() {
        let mut runs = vec![run(
            50.0,
            760.0,
            "A title that runs across both columns of the page",
        )];
        runs.extend(two_columns(4));
        // The left column runs one line longer.
        runs.push(run(50.0, 672.0, "left column ends here"));
        runs.push(run(
            50.0,
            600.0,
            "A footer that also runs across the whole width of it",
        ));
        let text = page_text(runs, Vec::new());
        let order: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            order[0],
            "A title that runs across both columns of the page"
        );
        assert_eq!(order[1], "left column line number 0 of text");
        assert_eq!(order[4], "left column line number 3 of text");
        assert_eq!(order[5], "left column ends here");
        assert_eq!(order[6], "right column line number 0 of text");
        assert_eq!(order[9], "right column line number 3 of text");
        assert_eq!(
            order[10],
            "A footer that also runs across the whole width of it"
        );
        assert!(text.contains("ends here\n\nright column"), "{text}");
    }

    #[test]
    fn short_aligned_cells_read_by_rows() {
        let mut runs = Vec::new();
        for (i, row) in [["Port", "Cranes"], ["Gdansk", "14"], ["Oslo", "9"]]
            .iter()
            .enumerate()
        {
            let y = 700.0 - 14.0 * i as f32;
            runs.push(run(50.0, y, row[0]));
            runs.push(run(200.0, y, row[1]));
        }
        assert_eq!(
            page_text(runs, Vec::new()),
            "Port Cranes\nGdansk 14\nOslo 9"
        );
    }

    #[test]
    fn a_table_block_takes_its_place_in_its_column() {
        let runs = two_columns(3);
        let table = Block {
            x0: 50.0,
            x1: 200.0,
            top: 680.0,
            bottom: 640.0,
            size: 10.0,
            text: "| a | b |\n| --- | --- |".to_string(),
            table: true,
        };
        let text = page_text(runs, vec![table]);
        assert!(
            text.contains(
                "line number 2 of text\n\n| a | b |\n| --- | --- |\n\nright column line number 0"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_twice_drawn_string_counts_once() {
        let runs = vec![run(50.0, 700.0, "Bold"), run(50.3, 700.0, "Bold")];
        assert_eq!(page_text(runs, Vec::new()), "Bold");
    }
}
