pub use docstream_udfs;
