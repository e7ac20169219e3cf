//! Where rows land: Delta tables under one lake root.

pub mod contract;
pub mod lake;
pub mod markers;
