//! A sweep's output folder, and the joining of shard folders.
//!
//! A folder holds `cells/<index>.json` (one [`CellReport`] per cell), `grid.json` (which grid
//! and which shard), `scenario.ron` (the scenario as run, with its paths as given to
//! [`write`]), and — when the results cover the whole grid — `summary.csv` and `seeds.csv`.
//! [`merge`] checks that shard folders come from one grid and hold each cell exactly once, then
//! writes the same files a single run writes.

use super::{seeds_csv, summary_csv, Cell, CellReport};
use crate::error::{Error, Result};
use crate::scenario::Scenario;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a sweep's folder holds, for merging shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// The scenario's name.
    pub scenario: String,
    /// Cells in the whole grid.
    pub cells: usize,
    /// `(K, N)`: slice K of N, 1-based; `None` for the whole grid.
    pub shard: Option<(usize, usize)>,
}

/// Parses `K/N` (1 ≤ K ≤ N).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::invalid("--shard", format!("expected K/N with 1 ≤ K ≤ N, got {s:?}"));
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// The cells of slice K of N: those whose index ≡ K − 1 (mod N).
pub fn shard(cells: Vec<Cell>, (k, n): (usize, usize)) -> Vec<Cell> {
    cells
        .into_iter()
        .filter(|c| c.key.index % n == k - 1)
        .collect()
}

fn write_file(path: PathBuf, text: String) -> Result<()> {
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

fn json<T: Serialize>(value: &T) -> String {
    // Reports and grids hold only numbers, strings and lists: serialising cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Writes every cell's JSON, `grid.json` and `scenario.ron` into `out` (created); and the tables
/// when the results cover the whole grid.
pub fn write(out: &Path, scenario: &Scenario, grid: &Grid, results: &[CellReport]) -> Result<()> {
    let cells_dir = out.join("cells");
    std::fs::create_dir_all(&cells_dir).map_err(|e| Error::io(&cells_dir, e))?;
    for r in results {
        write_file(cells_dir.join(format!("{:05}.json", r.cell.index)), json(r))?;
    }
    write_file(out.join("grid.json"), json(grid))?;
    let ron = ron::ser::to_string_pretty(scenario, Default::default())
        .map_err(|e| Error::invalid("scenario.ron", e.to_string()))?;
    write_file(out.join("scenario.ron"), ron)?;
    if results.len() == grid.cells {
        write_file(out.join("summary.csv"), summary_csv(results))?;
        write_file(out.join("seeds.csv"), seeds_csv(results))?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Reads every cell report of a sweep folder, in cell order.
pub fn read_cells(dir: &Path) -> Result<Vec<CellReport>> {
    let cells_dir = dir.join("cells");
    let entries = std::fs::read_dir(&cells_dir).map_err(|e| {
        Error::invalid(
            cells_dir.display().to_string(),
            format!(
                "cannot list it ({e}): is {} a `ptm sweep` folder?",
                dir.display()
            ),
        )
    })?;
    let mut files = Vec::new();
    for e in entries {
        let p = e.map_err(|e| Error::io(&cells_dir, e))?.path();
        if p.extension().is_some_and(|x| x == "json") {
            files.push(p);
        }
    }
    files.sort();
    let mut cells = Vec::with_capacity(files.len());
    for f in files {
        let name = f.display().to_string();
        cells.push(serde_json::from_str(&read(&f)?).map_err(|e| Error::from_json(&name, &e))?);
    }
    Ok(cells)
}

/// Joins shard folders into `out`; returns how many cells were merged.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<usize> {
    let mut grid: Option<Grid> = None;
    let mut scenario: Option<Scenario> = None;
    let mut results: Vec<CellReport> = Vec::new();
    for dir in dirs {
        let path = dir.join("grid.json");
        let g: Grid = serde_json::from_str(&read(&path)?)
            .map_err(|e| Error::from_json(&path.display().to_string(), &e))?;
        match &grid {
            Some(first) if (first.scenario.as_str(), first.cells) != (g.scenario.as_str(), g.cells) => {
                return Err(Error::invalid(
                    dir.display().to_string(),
                    format!(
                        "holds {} cells of {:?}, but the first folder holds {} cells of {:?}: not one grid",
                        g.cells, g.scenario, first.cells, first.scenario
                    ),
                ))
            }
            Some(_) => {}
            None => grid = Some(g),
        }
        if scenario.is_none() {
            let path = dir.join("scenario.ron");
            let name = path.display().to_string();
            scenario = Some(ron::from_str(&read(&path)?).map_err(|e| Error::from_ron(&name, e))?);
        }
        results.extend(read_cells(dir)?);
    }
    let (Some(grid), Some(scenario)) = (grid, scenario) else {
        return Err(Error::invalid("--merge", "needs at least one folder"));
    };
    results.sort_by_key(|r| r.cell.index);
    for (i, r) in results.iter().enumerate() {
        if r.cell.index != i {
            let what = if r.cell.index < i { "twice" } else { "missing" };
            return Err(Error::invalid(
                "--merge",
                format!(
                    "cell {} is {what} in the merged folders (the grid has {} cells)",
                    i.min(r.cell.index),
                    grid.cells
                ),
            ));
        }
    }
    if results.len() != grid.cells {
        return Err(Error::invalid(
            "--merge",
            format!(
                "the folders hold {} of the grid's {} cells: a shard is missing",
                results.len(),
                grid.cells
            ),
        ));
    }
    write(
        out,
        &scenario,
        &Grid {
            shard: None,
            ..grid
        },
        &results,
    )?;
    Ok(results.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_slice() {
        assert_eq!(parse_shard("2/3").unwrap(), (2, 3));
        for bad in ["0/3", "4/3", "x/3", "3"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
