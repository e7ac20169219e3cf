//! Ruled tables: horizontal and vertical rules that cross each other form
//! a grid, each text run inside it belongs to the cell its middle falls in,
//! and the grid becomes one markdown table block. Rules that make no grid
//! of two cells or more (underlines, a box around a paragraph) are ignored.

use super::content::{Ruling, Run};
use super::layout::{line_pieces, Block};
use crate::extract::table::{CellBudget, Table};
use crate::extract::ExtractError;

/// Rules closer than this (points) are the same rule, or touch.
const TOLERANCE: f32 = 2.0;
/// More cells than a page can show legibly: hatching or a drawing, whose
/// text stays in the page's flow.
const MAX_CELLS: usize = 10_000;
/// Pairs of rules compared at most, so a page of hatching costs bounded time.
const MAX_PAIRS: usize = 4_000_000;

/// Takes the runs inside ruled grids out of `runs` and returns each grid
/// as a table block.
pub(super) fn take_tables(
    rulings: &[Ruling],
    runs: &mut Vec<Run>,
    budget: &mut CellBudget,
) -> Result<Vec<Block>, ExtractError> {
    let horizontal = merged(rulings.iter().filter(|r| r.horizontal));
    let vertical = merged(rulings.iter().filter(|r| !r.horizontal));
    if horizontal.len().saturating_mul(vertical.len()) > MAX_PAIRS {
        return Ok(Vec::new());
    }
    let mut tables = Vec::new();
    for (ys, xs) in grids(&horizontal, &vertical) {
        let (top, bottom) = (ys[0], ys[ys.len() - 1]);
        let (left, right) = (xs[0], xs[xs.len() - 1]);
        if (ys.len() - 1) * (xs.len() - 1) > MAX_CELLS {
            continue;
        }
        let mut placed: Vec<(usize, usize, Run)> = Vec::new();
        let mut kept = Vec::with_capacity(runs.len());
        for run in runs.drain(..) {
            let (x, y) = ((run.x0 + run.x1) / 2.0, run.y + 0.3 * run.size);
            if x < left || x > right || y > top || y < bottom {
                kept.push(run);
                continue;
            }
            let col = xs.partition_point(|v| *v <= x).clamp(1, xs.len() - 1) - 1;
            let row = ys.partition_point(|v| *v >= y).clamp(1, ys.len() - 1) - 1;
            placed.push((row, col, run));
        }
        *runs = kept;
        if placed.is_empty() {
            continue;
        }
        let (rows, cols) = (ys.len() - 1, xs.len() - 1);
        let mut cells: Vec<Vec<Vec<Run>>> = vec![vec![Vec::new(); cols]; rows];
        for (row, col, run) in placed {
            cells[row][col].push(run);
        }
        let mut table = Table::default();
        let mut sizes = Vec::new();
        for row in cells {
            let mut texts = Vec::with_capacity(row.len());
            for cell in row {
                sizes.extend(cell.iter().map(|r| r.size));
                let lines: Vec<String> = line_pieces(cell).into_iter().map(|p| p.text).collect();
                texts.push(lines.join(" "));
            }
            table.push(texts, budget)?;
        }
        sizes.sort_by(f32::total_cmp);
        let mut text = String::new();
        table.write_markdown(&mut text);
        tables.push(Block {
            x0: left,
            x1: right,
            top,
            bottom,
            size: sizes[sizes.len() / 2],
            text: text.trim_end().to_string(),
            table: true,
        });
    }
    Ok(tables)
}

/// Joins rules that lie on one line and touch or overlap.
fn merged<'a>(rules: impl Iterator<Item = &'a Ruling>) -> Vec<Ruling> {
    let mut rules: Vec<Ruling> = rules.copied().collect();
    rules.sort_by(|a, b| a.at.total_cmp(&b.at).then(a.from.total_cmp(&b.from)));
    let mut out: Vec<Ruling> = Vec::with_capacity(rules.len());
    for r in rules {
        match out.last_mut() {
            Some(last) if (r.at - last.at).abs() <= TOLERANCE && r.from <= last.to + TOLERANCE => {
                last.to = last.to.max(r.to);
            }
            _ => out.push(r),
        }
    }
    out
}

/// Each set of crossing rules with at least two cells: its row lines,
/// top to bottom, and its column lines, left to right.
fn grids(horizontal: &[Ruling], vertical: &[Ruling]) -> Vec<(Vec<f32>, Vec<f32>)> {
    let n = horizontal.len();
    let mut parent: Vec<usize> = (0..n + vertical.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (i, h) in horizontal.iter().enumerate() {
        for (j, v) in vertical.iter().enumerate() {
            let crosses = v.at >= h.from - TOLERANCE
                && v.at <= h.to + TOLERANCE
                && h.at >= v.from - TOLERANCE
                && h.at <= v.to + TOLERANCE;
            if crosses {
                let (a, b) = (root(&mut parent, i), root(&mut parent, n + j));
                parent[a] = b;
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, (Vec<f32>, Vec<f32>)> = Default::default();
    for i in 0..parent.len() {
        let r = root(&mut parent, i);
        let group = groups.entry(r).or_default();
        if i < n {
            group.0.push(horizontal[i].at);
        } else {
            group.1.push(vertical[i - n].at);
        }
    }
    groups
        .into_values()
        .filter_map(|(mut ys, mut xs)| {
            ys.sort_by(|a, b| b.total_cmp(a));
            ys.dedup_by(|a, b| (*a - *b).abs() <= TOLERANCE);
            xs.sort_by(f32::total_cmp);
            xs.dedup_by(|a, b| (*a - *b).abs() <= TOLERANCE);
            let cells = ys.len().saturating_sub(1) * xs.len().saturating_sub(1);
            (cells >= 2).then_some((ys, xs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::Limits;

    fn h(y: f32, x0: f32, x1: f32) -> Ruling {
        Ruling {
            horizontal: true,
            at: y,
            from: x0,
            to: x1,
        }
    }

    fn v(x: f32, y0: f32, y1: f32) -> Ruling {
        Ruling {
            horizontal: false,
            at: x,
            from: y0,
            to: y1,
        }
    }

    /// A box from (50, 600) to (250, 700), split by vertical rules at `xs`.
    fn framed(xs: &[f32]) -> Vec<Ruling> {
        let mut rulings = vec![h(700.0, 50.0, 250.0), h(600.0, 50.0, 250.0)];
        for x in [50.0, 250.0].iter().chain(xs) {
            rulings.push(v(*x, 600.0, 700.0));
        }
        rulings
    }

    fn run(x0: f32, y: f32, text: &str) -> Run {
        Run {
            x0,
            x1: x0 + 5.0 * text.len() as f32,
            y,
            size: 10.0,
            text: text.to_string(),
        }
    }

    #[test]
    fn a_ruled_grid_becomes_a_markdown_table_and_keeps_the_text_outside() {
        // 3 rows × 2 columns, each cell edge drawn on its own, as reportlab does.
        let mut rulings = Vec::new();
        for y in [700.0, 680.0, 660.0, 640.0] {
            rulings.push(h(y, 50.0, 150.0));
            rulings.push(h(y, 150.0, 250.0));
        }
        for x in [50.0, 150.0, 250.0] {
            rulings.push(v(x, 640.0, 700.0));
        }
        let mut runs = vec![
            run(55.0, 686.0, "Port"),
            run(155.0, 686.0, "Cranes"),
            run(55.0, 666.0, "Gdansk"),
            run(155.0, 666.0, "14"),
            run(55.0, 646.0, "A|B"),
            run(155.0, 646.0, "9"),
            run(55.0, 720.0, "above the table"),
        ];
        let mut budget = CellBudget::new(&Limits::default());
        let tables = take_tables(&rulings, &mut runs, &mut budget).unwrap();
        assert_eq!(tables.len(), 1);
        assert_eq!(
            tables[0].text,
            "| Port | Cranes |\n| --- | --- |\n| Gdansk | 14 |\n| A\\|B | 9 |"
        );
        assert_eq!((tables[0].top, tables[0].bottom), (700.0, 640.0));
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].text, "above the table");
    }

    /// Asserts that `rulings` make no table and leave the run in the flow.
    fn no_table(rulings: &[Ruling], run: Run) {
        let mut runs = vec![run];
        let mut budget = CellBudget::new(&Limits::default());
        assert!(take_tables(rulings, &mut runs, &mut budget)
            .unwrap()
            .is_empty());
        assert_eq!(runs.len(), 1);
    }

    #[test]
    fn a_box_an_underline_or_hatching_is_no_table() {
        let mut rulings = framed(&[]);
        rulings.push(h(500.0, 50.0, 120.0));
        no_table(&rulings, run(60.0, 650.0, "boxed paragraph"));
        // 199 × 199 cells: a drawing, not a table.
        let mut hatching = Vec::new();
        for i in 0..200 {
            let at = 100.0 + 3.0 * i as f32;
            hatching.push(h(at, 100.0, 700.0));
            hatching.push(v(at, 100.0, 700.0));
        }
        no_table(&hatching, run(300.0, 300.0, "label"));
    }

    #[test]
    fn cells_draw_on_the_documents_budget() {
        let rulings = framed(&[150.0]);
        let mut runs = vec![run(60.0, 650.0, "a"), run(160.0, 650.0, "b")];
        let limits = Limits {
            max_table_cells: 1,
            ..Limits::default()
        };
        let mut budget = CellBudget::new(&limits);
        let err = take_tables(&rulings, &mut runs, &mut budget).unwrap_err();
        assert_eq!(err.kind, crate::contract::failure::ErrorKind::TooLarge);
    }
}
