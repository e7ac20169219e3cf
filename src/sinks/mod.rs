//! Where rows land: Delta tables under one lake root, and their upkeep.

pub mod children;
pub mod lake;
pub mod landed;
pub mod maintenance;
pub mod markers;
pub mod parquet_layout;
