//! Lineage: which stage fingerprint made which rows, and so which stages
//! still have to run for a document version.
//!
//! Every stage's rows carry its fingerprint, and each run of a stage on a
//! document version lands one `lineage` row after the stage's output: ok
//! (with the rows written) or failed (with the error kind). A stage runs
//! again for a version when no lineage row of its current fingerprint
//! says it is done, so adding a stage, editing one or retrying failures
//! computes only what changed. Rows written before fingerprints existed
//! are adopted once, as the output of the fingerprints current then.

pub mod adopt;
pub mod budget;
pub mod current;
pub mod inputs;
pub mod ledger;
pub mod plan;
pub mod record;
pub mod scope;
pub mod superseded;
