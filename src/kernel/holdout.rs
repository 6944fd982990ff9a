//! Where a lifecycle's holdout starts: the one check of the range, for the local pass and the
//! warehouse's queries alike.

/// A holdout start outside the rows of the pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("holdout_start {holdout_start} is outside rows {first}..{end}")]
pub struct HoldoutOutside {
    /// First row of the pass.
    pub first: u64,
    /// End of the pass (excluded).
    pub end: u64,
    /// The holdout start asked for.
    pub holdout_start: u64,
}

/// The holdout's offset into rows `[first, end)`: `holdout_start − first`, when `holdout_start`
/// lies in `[first, end]` (at `end`: an empty holdout).
pub fn holdout_offset(first: u64, end: u64, holdout_start: u64) -> Result<u64, HoldoutOutside> {
    if first <= holdout_start && holdout_start <= end {
        Ok(holdout_start - first)
    } else {
        Err(HoldoutOutside { first, end, holdout_start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_and_outside() {
        assert_eq!(holdout_offset(10, 20, 10), Ok(0));
        assert_eq!(holdout_offset(10, 20, 20), Ok(10));
        let e = holdout_offset(10, 20, 21).unwrap_err();
        assert_eq!(e.to_string(), "holdout_start 21 is outside rows 10..20");
        assert!(holdout_offset(10, 20, 9).is_err());
    }
}
