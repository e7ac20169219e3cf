//! Index generations kept open between searches. A published generation
//! never changes, so its folder names it: a process that searches again
//! (`serve`, `eval`, a SQL session) maps and walks it once, not per query.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;

/// Generations kept open per kind of index: a lake's layers (up to 8) of
/// a few indexes, with room for the next generation while the last is in use.
const KEEP: usize = 32;

/// The most recently used open generations, oldest first.
pub struct Opened<T>(Mutex<Vec<(PathBuf, Arc<T>)>>);

impl<T> Default for Opened<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Opened<T> {
    pub const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    /// The generation in `dir`, opened with `open` unless it is open already.
    pub fn get(&self, dir: &Path, open: impl FnOnce(&Path) -> Result<T>) -> Result<Arc<T>> {
        if let Some(found) = self.take(dir) {
            return Ok(found);
        }
        // Opened outside the lock: opening a large generation takes a while.
        let index = Arc::new(open(dir)?);
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(d, _)| d != dir);
        open.push((dir.to_path_buf(), index.clone()));
        if open.len() > KEEP {
            open.remove(0);
        }
        Ok(index)
    }

    /// The open generation in `dir`, moved to the most recent end.
    fn take(&self, dir: &Path) -> Option<Arc<T>> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let at = open.iter().position(|(d, _)| d == dir)?;
        let entry = open.remove(at);
        let index = entry.1.clone();
        open.push(entry);
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_a_generation_once_and_forgets_the_oldest() {
        let opened: Opened<usize> = Opened::new();
        let mut opens = 0;
        for round in 0..2 {
            for n in 0..KEEP {
                let dir = PathBuf::from(format!("g{n}"));
                let got = opened.get(&dir, |_| {
                    opens += 1;
                    Ok(n)
                });
                assert_eq!(*got.unwrap(), n, "round {round}");
            }
        }
        assert_eq!(opens, KEEP, "the second round found every generation open");
        opened.get(Path::new("new"), |_| Ok(0)).unwrap();
        opened.get(Path::new("g0"), |_| Ok(99)).unwrap();
        assert_eq!(*opened.get(Path::new("g0"), |_| Ok(7)).unwrap(), 99);
        let reopened = opened.get(Path::new("g1"), |_| Ok(42)).unwrap();
        assert_eq!(*reopened, 42, "g1 was the oldest and was forgotten");
        assert!(opened
            .get(Path::new("bad"), |_| anyhow::bail!("damaged"))
            .is_err());
    }
}
